using System.Net;
using System.Text.Json;
using Relay.FunctionalTests.Infrastructure;
using Relay.FunctionalTests.L4;

namespace Relay.FunctionalTests.Admin;

public class AdminApiTests
{
    [Theory]
    [InlineData(null)]
    [InlineData("Bearer wrong-token-0000000000")]
    [InlineData("Basic dXNlcjpwYXNz")]
    public async Task RequestWithoutTheRightToken_Gets401_AndIsCounted(string? authorization)
    {
        await using var upstream = TestUpstream.Echo();
        await using var relay = await TestRelay.StartAsync(L4RelayTests.Config(L4RelayTests.Endpoint("e1", upstream.Address)));
        using var http = new HttpClient { BaseAddress = relay.App.AdminAddress };
        foreach (var path in new[] { "/api/endpoints", "/api/sessions", "/metrics" })
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, path);
            if (authorization is not null)
            {
                request.Headers.TryAddWithoutValidation("Authorization", authorization);
            }

            using var response = await http.SendAsync(request).WaitAsync(TimeSpan.FromSeconds(10));
            Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
            Assert.Equal("Bearer", response.Headers.WwwAuthenticate.Single().Scheme);
            Assert.Contains("unauthorized", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        Assert.True(relay.Log.Has("AdminUnauthorized"));
        Assert.Contains("relay_admin_unauthorized_total 3", relay.Metrics());
    }

    [Fact]
    public async Task HealthAndReadiness_NeedNoToken()
    {
        await using var upstream = TestUpstream.Echo();
        await using var relay = await TestRelay.StartAsync(L4RelayTests.Config(L4RelayTests.Endpoint("e1", upstream.Address)));
        using var http = new HttpClient { BaseAddress = relay.App.AdminAddress };
        Assert.Equal("ok\n", await http.GetStringAsync("/healthz").WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Equal("ready\n", await http.GetStringAsync("/readyz").WaitAsync(TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public async Task Sessions_AreListedWithTheirBytes_AndUnknownIdsGet404()
    {
        await using var upstream = TestUpstream.Echo();
        await using var relay = await TestRelay.StartAsync(L4RelayTests.Config(L4RelayTests.Endpoint("e1", upstream.Address)));
        using var client = await relay.ConnectAsync("r");
        await client.SendAllAsync(new byte[1000]);
        Assert.Equal(1000, (await client.ReceiveExactlyAsync(1000)).Length);

        using var list = JsonDocument.Parse(await relay.Http.GetStringAsync("/api/sessions").WaitAsync(TimeSpan.FromSeconds(10)));
        var session = Assert.Single(list.RootElement.EnumerateArray());
        Assert.Equal("r", session.GetProperty("route").GetString());
        Assert.Equal("e1", session.GetProperty("endpoint").GetString());
        Assert.Equal(1000, session.GetProperty("bytesIn").GetInt64());
        Assert.Equal(1000, session.GetProperty("bytesOut").GetInt64());

        var id = session.GetProperty("id").GetInt64();
        using var one = JsonDocument.Parse(await relay.Http.GetStringAsync($"/api/sessions/{id}").WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Equal(id, one.RootElement.GetProperty("id").GetInt64());

        using var missing = await relay.Http.GetAsync("/api/sessions/999999").WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
        Assert.Contains("no live session 999999", await missing.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task SessionQueries_FilterAndLimit_AndABadValueGetsAClearError()
    {
        await using var upstream = TestUpstream.Echo();
        await using var relay = await TestRelay.StartAsync(L4RelayTests.Config(L4RelayTests.Endpoint("e1", upstream.Address)));
        using var first = await relay.ConnectAsync("r");
        using var second = await relay.ConnectAsync("r");
        foreach (var client in new[] { first, second })
        {
            await client.SendAllAsync(new byte[10]);
            Assert.Equal(10, (await client.ReceiveExactlyAsync(10)).Length);
        }

        async Task<int> CountAsync(string query)
        {
            using var list = JsonDocument.Parse(await relay.Http.GetStringAsync("/api/sessions" + query).WaitAsync(TimeSpan.FromSeconds(10)));
            return list.RootElement.GetArrayLength();
        }

        Assert.Equal(2, await CountAsync(""));
        Assert.Equal(2, await CountAsync("?route=r&endpoint=e1"));
        Assert.Equal(0, await CountAsync("?route=other"));
        Assert.Equal(0, await CountAsync("?endpoint=e2"));
        Assert.Equal(1, await CountAsync("?limit=1"));
        Assert.Equal(1, await CountAsync("?limit=0")); // clamped to at least one

        using var bad = await relay.Http.GetAsync("/api/sessions?limit=ten").WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
        using var problem = JsonDocument.Parse(await bad.Content.ReadAsStringAsync());
        Assert.Equal("limit: expected an integer, found \"ten\"", problem.RootElement.GetProperty("error").GetString());

        // {id:long}: an id that is not a number matches no route.
        using var notANumber = await relay.Http.GetAsync("/api/sessions/abc").WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(HttpStatusCode.NotFound, notANumber.StatusCode);
    }

    [Fact]
    public async Task Metrics_ArePrometheusText_WithSessionsAndHistogram()
    {
        await using var upstream = TestUpstream.Echo();
        await using var relay = await TestRelay.StartAsync(L4RelayTests.Config(L4RelayTests.Endpoint("e1", upstream.Address)));
        using (var client = await relay.ConnectAsync("r"))
        {
            await client.SendAllAsync("abc"u8.ToArray());
            await client.ReceiveExactlyAsync(3);
        }

        await relay.Log.WaitForAsync("SessionEnded", TimeSpan.FromSeconds(10));

        // At least one collection has paused this process (which hosts the relay) before the scrape.
        GC.Collect();
        var pausedBefore = GC.GetTotalPauseDuration().TotalSeconds;
        var allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);
        using var response = await relay.Http.GetAsync("/metrics").WaitAsync(TimeSpan.FromSeconds(10));
        var pausedAfter = GC.GetTotalPauseDuration().TotalSeconds;
        var allocatedAfter = GC.GetTotalAllocatedBytes(precise: true);
        Assert.StartsWith("text/plain", response.Content.Headers.ContentType?.MediaType, StringComparison.Ordinal);
        var text = await response.Content.ReadAsStringAsync();
        Assert.Contains("relay_sessions_total{route=\"r\"} 1", text);
        Assert.Contains("relay_sessions_active{route=\"r\"} 0", text);
        Assert.Contains("relay_session_duration_seconds_count{route=\"r\"} 1", text);
        Assert.Contains("relay_endpoint_healthy{cluster=\"c\",endpoint=\"e1\"} 1", text);

        // Process metrics, read from /proc/self (this test's process hosts the relay).
        double Value(string name)
        {
            var line = text.Split('\n').Single(l => l.StartsWith(name + " ", StringComparison.Ordinal));
            return double.Parse(line[(name.Length + 1)..], System.Globalization.CultureInfo.InvariantCulture);
        }

        Assert.InRange(Value("process_working_set_bytes"), Environment.WorkingSet / 2.0, Environment.WorkingSet * 2.0);
        Assert.InRange(Value("process_num_threads"), 2, 10_000);
        Assert.InRange(Value("process_open_handles"), 3, 100_000); // at least the sockets of this test
        Assert.True(Value("process_virtual_memory_bytes") >= Value("process_working_set_bytes"));
        Assert.True(Value("process_cpu_seconds_total") > 0);
        var started = DateTimeOffset.FromUnixTimeMilliseconds((long)(Value("process_start_time_seconds") * 1000));
        var startedByTheRuntime = System.Diagnostics.Process.GetCurrentProcess().StartTime.ToUniversalTime();
        Assert.InRange((started - startedByTheRuntime).Duration(), TimeSpan.Zero, TimeSpan.FromSeconds(1));
        Assert.True(Value("dotnet_total_memory_bytes") > 0);
        Assert.True(pausedBefore > 0);
        Assert.InRange(Value("relay_gc_pause_seconds_total"), pausedBefore, pausedAfter);
        Assert.InRange(Value("relay_gc_allocated_bytes_total"), allocatedBefore, allocatedAfter);
    }
}
