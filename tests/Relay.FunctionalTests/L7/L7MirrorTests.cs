using System.Net;
using Relay.FunctionalTests.Infrastructure;

namespace Relay.FunctionalTests.L7;

public class L7MirrorTests
{
    /// <summary>A second cluster "s" holding the shadow endpoints, not probed.</summary>
    internal static string ShadowCluster(params (string Id, HttpBackend Backend)[] shadows) =>
        $$""", "s": { "healthCheck": { {{L7Test.NoProbes}} }, "endpoints": { {{string.Join(",", shadows.Select(s => L7Test.Endpoint(s.Id, s.Backend)))}} } }""";

    /// <summary>Noise filters for the test backends, whose answers name the backend that made them.</summary>
    internal const string Filters = """ "compare": { "ignoreHeaders": ["X-Backend", "Date", "Server", "Content-Length", "Transfer-Encoding"], "ignoreJsonFields": ["backend"], "window": 10, "minSamples": 3 } """;

    [Fact]
    public async Task Mirror_SamplesThePercentage_AndMarksOnlyShadowTraffic()
    {
        await using var primary = await HttpBackend.StartAsync("b1");
        await using var shadow = await HttpBackend.StartAsync("sh");
        await using var relay = await TestRelay.StartAsync(L7Test.Config(
            L7Test.Endpoint("b1", primary),
            route: """, "mirror": { "shadows": ["sh"], "percent": 50 } """,
            clusters: ShadowCluster(("sh", shadow))));
        using var client = L7Test.Client(relay);

        for (var i = 0; i < 200; i++)
        {
            Assert.Equal("b1", await client.GetBackendAsync($"/item/{i}"));
        }

        var queued = relay.Metric("relay_http_mirror_total{route=\"web\",shadow=\"sh\",result=\"queued\"}");
        await L7Test.WaitUntilAsync(() => shadow.Requests.Count == (int)queued, "every queued copy reaches the shadow");
        Assert.InRange(shadow.Requests.Count, 60, 140);
        Assert.All(shadow.Requests, r => Assert.Equal("web", r.ShadowHeader));
        Assert.All(primary.Requests, r => Assert.Equal("", r.ShadowHeader));
        Assert.Equal(200, primary.Requests.Count);
        Assert.Equal(0, relay.Metric("relay_http_mirror_total{route=\"web\",shadow=\"sh\",result=\"dropped\"}"));
    }

    [Fact]
    public async Task Mirror_NonIdempotentOnly_CopiesPostsWithTheirBodies_AndSkipsBodiesPastTheCap()
    {
        await using var primary = await HttpBackend.StartAsync("b1");
        await using var shadow = await HttpBackend.StartAsync("sh");
        await using var relay = await TestRelay.StartAsync(L7Test.Config(
            L7Test.Endpoint("b1", primary),
            route: """, "mirror": { "shadows": ["sh"], "methods": "nonIdempotent", "maxBodyBytes": 1000 } """,
            clusters: ShadowCluster(("sh", shadow))));
        using var client = L7Test.Client(relay);

        for (var i = 0; i < 5; i++)
        {
            using var get = await client.GetAsync($"/get/{i}").WaitAsync(L7Test.Timeout);
            using var post = await client.PostAsync($"/post/{i}", new StringContent($"body {i}")).WaitAsync(L7Test.Timeout);
            Assert.Equal(HttpStatusCode.OK, post.StatusCode);
        }

        using (var big = await client.PostAsync("/big", new StringContent(new string('x', 5000))).WaitAsync(L7Test.Timeout))
        {
            Assert.Equal(HttpStatusCode.OK, big.StatusCode);
        }

        await L7Test.WaitUntilAsync(() => shadow.Requests.Count >= 5, "the posts reach the shadow");
        await Task.Delay(200);
        Assert.Equal(5, shadow.Requests.Count);
        Assert.All(shadow.Requests, r => Assert.Equal("POST", r.Method));
        Assert.Equal(Enumerable.Range(0, 5).Select(i => $"body {i}"), shadow.Requests.Select(r => r.Body).Order());
        Assert.Equal(1, relay.Metric("relay_http_mirror_total{route=\"web\",shadow=\"sh\",result=\"skipped_body\"}"));
        Assert.Equal(5000, primary.Requests.Single(r => r.Path == "/big").Body.Length);
    }

    [Fact]
    public async Task Mirror_FullQueue_DropsAndCountsCopies_WithoutSlowingThePrimary()
    {
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var primary = await HttpBackend.StartAsync("b1");
        await using var shadow = await HttpBackend.StartAsync("sh", async (context, backend) =>
        {
            await gate.Task.WaitAsync(L7Test.Timeout);
            await HttpBackend.DefaultAsync(context, backend, "");
        });
        await using var relay = await TestRelay.StartAsync(L7Test.Config(
            L7Test.Endpoint("b1", primary),
            route: """, "mirror": { "shadows": ["sh"], "queueLength": 2, "concurrency": 1 } """,
            clusters: ShadowCluster(("sh", shadow))));
        using var client = L7Test.Client(relay);

        // The shadow answers nothing until the gate opens; the primary must not notice.
        for (var i = 0; i < 30; i++)
        {
            Assert.Equal("b1", await client.GetBackendAsync($"/n/{i}"));
        }

        var queued = relay.Metric("relay_http_mirror_total{route=\"web\",shadow=\"sh\",result=\"queued\"}");
        var dropped = relay.Metric("relay_http_mirror_total{route=\"web\",shadow=\"sh\",result=\"dropped\"}");
        Assert.Equal(30, queued + dropped);
        Assert.InRange(queued, 2, 3);
        using (var view = await relay.AdminJsonAsync("/api/l7/routes/web"))
        {
            var stats = view.RootElement.GetProperty("mirror").GetProperty("shadows")[0];
            Assert.Equal(dropped, stats.GetProperty("dropped").GetInt64());
        }

        gate.SetResult();
        await L7Test.WaitUntilAsync(() => shadow.Requests.Count == (int)queued, "the queued copies are sent once the shadow answers");
    }

    [Fact]
    public async Task Compare_NoiseFiltersMakeAMatchingShadowConsistent_AndADifferentOneInconsistent()
    {
        await using var primary = await HttpBackend.StartAsync("b1");
        await using var same = await HttpBackend.StartAsync("same");
        await using var different = await HttpBackend.StartAsync("different", async (context, backend) =>
        {
            context.Response.StatusCode = 200;
            await HttpBackend.DefaultAsync(context, backend, "something else");
        });
        await using var relay = await TestRelay.StartAsync(L7Test.Config(
            L7Test.Endpoint("b1", primary),
            route: $$""", "mirror": { "shadows": ["same", "different"], {{Filters}} } """,
            clusters: ShadowCluster(("same", same), ("different", different))));
        using var client = L7Test.Client(relay);

        for (var i = 0; i < 10; i++)
        {
            await client.GetBackendAsync($"/c/{i}");
        }

        await L7Test.WaitUntilAsync(() => relay.Metric("relay_http_mirror_compare_total{route=\"web\",shadow=\"different\",result=\"body\"}") == 10
            && relay.Metric("relay_http_mirror_compare_total{route=\"web\",shadow=\"same\",result=\"match\"}") == 10, "every copy is compared");
        using var view = await relay.AdminJsonAsync("/api/l7/routes/web");
        var shadows = view.RootElement.GetProperty("mirror").GetProperty("shadows").EnumerateArray().ToDictionary(s => s.GetProperty("shadow").GetString()!);
        Assert.Equal("consistent", shadows["same"].GetProperty("consistency").GetString());
        Assert.Equal("inconsistent", shadows["different"].GetProperty("consistency").GetString());
        Assert.Equal(1, relay.Metric("relay_http_shadow_consistent{route=\"web\",shadow=\"same\"}"));
        Assert.Equal(0, relay.Metric("relay_http_shadow_consistent{route=\"web\",shadow=\"different\"}"));
    }

    [Fact]
    public async Task Compare_WithoutTheJsonFilter_TheBackendNameIsADifference()
    {
        await using var primary = await HttpBackend.StartAsync("b1");
        await using var shadow = await HttpBackend.StartAsync("sh");
        await using var relay = await TestRelay.StartAsync(L7Test.Config(
            L7Test.Endpoint("b1", primary),
            route: """, "mirror": { "shadows": ["sh"], "compare": { "ignoreHeaders": ["X-Backend", "Date", "Server", "Content-Length", "Transfer-Encoding"], "minSamples": 3, "window": 10 } } """,
            clusters: ShadowCluster(("sh", shadow))));
        using var client = L7Test.Client(relay);
        for (var i = 0; i < 4; i++)
        {
            await client.GetBackendAsync();
        }

        await L7Test.WaitUntilAsync(() => relay.Metric("relay_http_mirror_compare_total{route=\"web\",shadow=\"sh\",result=\"body\"}") == 4, "the bodies differ by the backend's name");
        await relay.Log.WaitForAsync("HttpShadowConsistencyChanged", L7Test.Timeout, e => e.Message.Contains("inconsistent", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Failover_MovesASessionToAConsistentShadow_WhenItsEndpointDies()
    {
        await using var b1 = await HttpBackend.StartAsync("b1");
        await using var b2 = await HttpBackend.StartAsync("b2");
        await using var shadow = await HttpBackend.StartAsync("sh");
        await using var relay = await TestRelay.StartAsync(L7Test.Config(
            L7Test.Endpoint("b1", b1) + "," + L7Test.Endpoint("b2", b2),
            route: $$""", "affinity": { "mode": "cookie" }, "mirror": { "shadows": ["sh"], {{Filters}} } """,
            clusters: ShadowCluster(("sh", shadow))));
        using var client = L7Test.Client(relay, cookies: true);
        var pinned = await client.GetBackendAsync();
        for (var i = 0; i < 4; i++)
        {
            Assert.Equal(pinned, await client.GetBackendAsync());
        }

        await L7Test.WaitUntilAsync(() => relay.Metric("relay_http_shadow_consistent{route=\"web\",shadow=\"sh\"}") == 1, "the shadow is consistent");
        await (pinned == "b1" ? b1 : b2).KillAsync();

        for (var i = 0; i < 5; i++)
        {
            Assert.Equal("sh", await client.GetBackendAsync());
        }

        Assert.Equal(1, relay.Metric("relay_http_affinity_moves_total{route=\"web\",to=\"shadow\"}"));
        using var sessions = await relay.AdminJsonAsync("/api/l7/sessions");
        Assert.Equal("sh", sessions.RootElement[0].GetProperty("endpoint").GetString());
    }
}
