using System.Net;
using System.Text.Json;
using Relay.FunctionalTests.Infrastructure;

namespace Relay.FunctionalTests.L7;

public class L7RetryTests
{
    private const string Generous = """, "retries": { "attempts": 3, "budgetPercent": 100, "minBudget": 1000 }, "idempotencyKeyHeader": "Idempotency-Key" """;

    [Fact]
    public async Task AResetAfterSending_RetriesIdempotentAndKeyedRequests_AndAnswersOthersWithA502()
    {
        // b1 reads each request and then drops the connection without answering.
        await using var b1 = await HttpBackend.StartAsync("b1", (context, _) =>
        {
            context.Abort();
            return Task.CompletedTask;
        });
        await using var b2 = await HttpBackend.StartAsync("b2");
        await using var relay = await TestRelay.StartAsync(L7Test.Config(
            L7Test.Endpoint("b1", b1) + "," + L7Test.Endpoint("b2", b2),
            route: Generous,
            cluster: """, "loadBalancing": "roundRobin" """,
            health: L7Test.NoProbes + """, "passive": { "enabled": false } """));
        using var client = L7Test.Client(relay);

        for (var i = 0; i < 6; i++)
        {
            Assert.Equal("b2", await client.GetBackendAsync($"/get/{i}"));
            var keyed = new HttpRequestMessage(HttpMethod.Post, $"/keyed/{i}") { Content = new StringContent($"k{i}") };
            keyed.Headers.Add("Idempotency-Key", $"key-{i}");
            Assert.Equal("b2", await client.GetBackendAsync(request: keyed));
        }

        var refused = 0;
        for (var i = 0; i < 6; i++)
        {
            using var response = await client.PostAsync($"/plain/{i}", new StringContent($"p{i}")).WaitAsync(L7Test.Timeout);
            if (response.StatusCode == HttpStatusCode.BadGateway)
            {
                refused++;
                Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
                using var error = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
                Assert.Equal("not_retryable", error.RootElement.GetProperty("reason").GetString());
                Assert.Equal("b1", error.RootElement.GetProperty("endpoint").GetString());
                Assert.Contains("Idempotency-Key", error.RootElement.GetProperty("hint").GetString(), StringComparison.Ordinal);
            }
            else
            {
                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            }
        }

        Assert.InRange(refused, 1, 6);
        Assert.Equal(refused, relay.Metric("relay_http_failures_total{route=\"web\",reason=\"not_retryable\"}"));
        Assert.True(relay.Metric("relay_http_retries_total{route=\"web\",reason=\"reset\"}") >= 2);
        Assert.Equal(6, b2.Requests.Count(r => r.Path.StartsWith("/keyed/", StringComparison.Ordinal) && r.IdempotencyKey.Length > 0));
        Assert.Equal(refused, relay.Log.Named("HttpRequestFailed").Count());
    }

    [Fact]
    public async Task ARefusedConnect_IsRetriedForAnyMethod_BecauseNothingWasSent()
    {
        await using var dead = await HttpBackend.StartAsync("dead");
        await using var live = await HttpBackend.StartAsync("live");
        await dead.KillAsync();
        await using var relay = await TestRelay.StartAsync(L7Test.Config(
            L7Test.Endpoint("dead", dead) + "," + L7Test.Endpoint("live", live),
            route: """, "retries": { "attempts": 2, "budgetPercent": 100, "minBudget": 100 } """,
            cluster: """, "loadBalancing": "roundRobin" """,
            health: L7Test.NoProbes + """, "passive": { "enabled": false } """));
        using var client = L7Test.Client(relay);
        for (var i = 0; i < 4; i++)
        {
            Assert.Equal("live", await client.GetBackendAsync(request: new HttpRequestMessage(HttpMethod.Post, "/") { Content = new StringContent("x") }));
        }

        Assert.True(relay.Metric("relay_http_retries_total{route=\"web\",reason=\"connect\"}") >= 1);
        Assert.Equal(0, relay.Metric("relay_http_failures_total{route=\"web\",reason=\"not_retryable\"}"));
    }

    [Fact]
    public async Task NoEndpointLeft_GetsA503JsonError()
    {
        await using var dead = await HttpBackend.StartAsync("dead");
        await dead.KillAsync();
        await using var relay = await TestRelay.StartAsync(L7Test.Config(L7Test.Endpoint("dead", dead), route: Generous));
        using var client = L7Test.Client(relay);
        using var response = await client.GetAsync("/").WaitAsync(L7Test.Timeout);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        using var error = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.Equal("no_endpoint", error.RootElement.GetProperty("reason").GetString());
        Assert.Equal(1, relay.Metric("relay_http_failures_total{route=\"web\",reason=\"no_endpoint\"}"));
    }

    [Fact]
    public async Task KillingABackendUnderLoad_FailsNoIdempotentRequest_AndAccountsForEveryOtherFailure()
    {
        await using var b1 = await HttpBackend.StartAsync("b1");
        await using var b2 = await HttpBackend.StartAsync("b2");
        await using var relay = await TestRelay.StartAsync(L7Test.Config(
            L7Test.Endpoint("b1", b1) + "," + L7Test.Endpoint("b2", b2),
            route: Generous));
        using var client = L7Test.Client(relay);

        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(3);
        var getFailures = 0;
        var keyedFailures = 0;
        var plainFailures = 0;
        var plainBadGateway = 0;
        var total = 0;

        async Task LoopAsync(Func<int, HttpRequestMessage> make, Action<HttpResponseMessage?> onFailure)
        {
            for (var i = 0; i < 2000 && DateTime.UtcNow < deadline; i++)
            {
                Interlocked.Increment(ref total);
                try
                {
                    using var response = await client.SendAsync(make(i)).WaitAsync(L7Test.Timeout);
                    await response.Content.ReadAsByteArrayAsync();
                    if (response.StatusCode != HttpStatusCode.OK)
                    {
                        onFailure(response);
                    }
                }
                catch (HttpRequestException)
                {
                    onFailure(null);
                }
            }
        }

        var loops = new List<Task>();
        for (var w = 0; w < 3; w++)
        {
            loops.Add(LoopAsync(i => new HttpRequestMessage(HttpMethod.Get, $"/g/{i}"), _ => Interlocked.Increment(ref getFailures)));
        }

        loops.Add(LoopAsync(
            i =>
            {
                var request = new HttpRequestMessage(HttpMethod.Post, $"/k/{i}") { Content = new StringContent("k") };
                request.Headers.Add("Idempotency-Key", $"k{i}");
                return request;
            },
            _ => Interlocked.Increment(ref keyedFailures)));
        loops.Add(LoopAsync(
            i => new HttpRequestMessage(HttpMethod.Post, $"/p/{i}") { Content = new StringContent("p") },
            response =>
            {
                Interlocked.Increment(ref plainFailures);
                if (response?.StatusCode == HttpStatusCode.BadGateway)
                {
                    Interlocked.Increment(ref plainBadGateway);
                }
            }));

        await Task.Delay(700);
        await b1.KillAsync();
        await Task.WhenAll(loops).WaitAsync(TimeSpan.FromSeconds(30));

        Assert.True(total > 100, $"only {total} requests were made");
        Assert.Equal(0, getFailures);
        Assert.Equal(0, keyedFailures);
        var accounted = relay.Metric("relay_http_failures_total{route=\"web\",reason=\"not_retryable\"}")
            + relay.Metric("relay_http_failures_total{route=\"web\",reason=\"response\"}");
        Assert.Equal(plainFailures, accounted);
        Assert.Equal(plainBadGateway, relay.Metric("relay_http_failures_total{route=\"web\",reason=\"not_retryable\"}"));
        Assert.Equal(0, relay.Metric("relay_http_failures_total{route=\"web\",reason=\"budget\"}"));
    }
}
