using System.Net;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using Relay.FunctionalTests.Infrastructure;

namespace Relay.FunctionalTests.L7;

public class L7RoutingTests
{
    [Fact]
    public async Task HttpRoute_ForwardsRequestsAndBodies_AndCountsThem()
    {
        await using var backend = await HttpBackend.StartAsync("b1");
        await using var relay = await TestRelay.StartAsync(L7Test.Config(L7Test.Endpoint("b1", backend)));
        using var client = L7Test.Client(relay);

        using var get = await client.GetAsync("/hello?x=1").WaitAsync(L7Test.Timeout);
        Assert.Equal(HttpStatusCode.OK, get.StatusCode);
        using (var json = JsonDocument.Parse(await get.Content.ReadAsStringAsync()))
        {
            Assert.Equal("b1", json.RootElement.GetProperty("backend").GetString());
            Assert.Equal("/hello", json.RootElement.GetProperty("path").GetString());
        }

        var payload = new string('z', 100_000);
        using var post = await client.PostAsync("/upload", new StringContent(payload)).WaitAsync(L7Test.Timeout);
        Assert.Equal(HttpStatusCode.OK, post.StatusCode);
        using (var json = JsonDocument.Parse(await post.Content.ReadAsStringAsync()))
        {
            Assert.Equal(payload, json.RootElement.GetProperty("body").GetString());
        }

        Assert.Equal(2, backend.Requests.Count);
        Assert.Equal(2, relay.Metric("relay_http_requests_total{route=\"web\",status=\"2xx\"}"));
        using var routes = await relay.AdminJsonAsync("/api/routes");
        Assert.Equal("http", routes.RootElement[0].GetProperty("protocol").GetString());
        using var l7 = await relay.AdminJsonAsync("/api/l7/routes/web");
        Assert.Equal(2, l7.RootElement.GetProperty("requests").GetInt64());
        Assert.Equal("Relay", relay.Log.Named("HttpRouteListening").Single().Category.Split('.')[0]);
    }

    [Fact]
    public async Task CookieAffinity_PinsEachSessionToOneEndpoint()
    {
        await using var b1 = await HttpBackend.StartAsync("b1");
        await using var b2 = await HttpBackend.StartAsync("b2");
        await using var relay = await TestRelay.StartAsync(L7Test.Config(
            L7Test.Endpoint("b1", b1) + "," + L7Test.Endpoint("b2", b2),
            route: """, "affinity": { "mode": "cookie", "name": "sid" } """,
            cluster: """, "loadBalancing": "roundRobin" """));

        var seen = new HashSet<string>();
        for (var c = 0; c < 4; c++)
        {
            using var client = L7Test.Client(relay, cookies: true);
            var first = await client.GetBackendAsync();
            seen.Add(first);
            for (var i = 0; i < 10; i++)
            {
                Assert.Equal(first, await client.GetBackendAsync());
            }
        }

        Assert.Equal(2, seen.Count);
        using var sessions = await relay.AdminJsonAsync("/api/l7/sessions?route=web");
        Assert.Equal(4, sessions.RootElement.GetArrayLength());
        Assert.All(sessions.RootElement.EnumerateArray(), s => Assert.Equal(11, s.GetProperty("requests").GetInt64()));
    }

    [Fact]
    public async Task HeaderAffinity_UsesTheClientsKey_AndNoKeyMeansNoSession()
    {
        await using var b1 = await HttpBackend.StartAsync("b1");
        await using var b2 = await HttpBackend.StartAsync("b2");
        await using var relay = await TestRelay.StartAsync(L7Test.Config(
            L7Test.Endpoint("b1", b1) + "," + L7Test.Endpoint("b2", b2),
            route: """, "affinity": { "mode": "header" } """,
            cluster: """, "loadBalancing": "roundRobin" """));
        using var client = L7Test.Client(relay);

        HttpRequestMessage Keyed(string key)
        {
            var request = new HttpRequestMessage(HttpMethod.Get, "/");
            request.Headers.Add("X-Relay-Session", key);
            return request;
        }

        var alice = await client.GetBackendAsync(request: Keyed("alice"));
        var bob = await client.GetBackendAsync(request: Keyed("bob"));
        Assert.NotEqual(alice, bob);
        for (var i = 0; i < 6; i++)
        {
            Assert.Equal(alice, await client.GetBackendAsync(request: Keyed("alice")));
            Assert.Equal(bob, await client.GetBackendAsync(request: Keyed("bob")));
        }

        var unkeyed = new HashSet<string>();
        for (var i = 0; i < 4; i++)
        {
            unkeyed.Add(await client.GetBackendAsync());
        }

        Assert.Equal(2, unkeyed.Count);
        Assert.Equal(2, relay.App.L7.SessionViews(null, null, 100).Count);
    }

    [Fact]
    public async Task Drain_LetsInFlightRequestsFinish_AndMovesLiveSessions()
    {
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Func<Microsoft.AspNetCore.Http.HttpContext, HttpBackend, Task> slowOnDemand = async (context, backend) =>
        {
            if (context.Request.Path == "/slow")
            {
                await gate.Task.WaitAsync(L7Test.Timeout);
            }

            await HttpBackend.DefaultAsync(context, backend, "");
        };
        await using var b1 = await HttpBackend.StartAsync("b1", slowOnDemand);
        await using var b2 = await HttpBackend.StartAsync("b2", slowOnDemand);
        await using var relay = await TestRelay.StartAsync(L7Test.Config(
            L7Test.Endpoint("b1", b1) + "," + L7Test.Endpoint("b2", b2),
            route: """, "affinity": { "mode": "cookie" } """));
        using var client = L7Test.Client(relay, cookies: true);
        var pinned = await client.GetBackendAsync();
        var other = pinned == "b1" ? "b2" : "b1";

        var slow = client.GetAsync("/slow");
        await L7Test.WaitUntilAsync(() => (pinned == "b1" ? b1 : b2).Requests.Any(r => r.Path == "/slow"), "the slow request reaches its endpoint");
        using (var drained = await relay.Http.PostAsync($"/api/endpoints/{pinned}/drain", null).WaitAsync(L7Test.Timeout))
        {
            Assert.Equal(HttpStatusCode.OK, drained.StatusCode);
        }

        Assert.Equal(other, await client.GetBackendAsync());
        Assert.Equal(other, await client.GetBackendAsync());
        gate.SetResult();
        using var slowResponse = await slow.WaitAsync(L7Test.Timeout);
        Assert.Equal(pinned, slowResponse.Headers.GetValues("X-Backend").Single());

        var moved = relay.Log.Named("HttpAffinityMoved").Single();
        Assert.Contains("drained", moved.Message, StringComparison.Ordinal);
        Assert.Equal(1, relay.Metric("relay_http_affinity_moves_total{route=\"web\",to=\"cluster\"}"));
        using var endpoint = await relay.AdminJsonAsync($"/api/endpoints/{pinned}");
        Assert.True(endpoint.RootElement.GetProperty("draining").GetBoolean());
    }

    [Fact]
    public async Task WebSocket_IsCarriedThroughTheRelay_AsAnL4Session()
    {
        await using var backend = await HttpBackend.StartAsync("b1");
        await using var relay = await TestRelay.StartAsync(L7Test.Config(L7Test.Endpoint("b1", backend)));
        using var socket = new ClientWebSocket();
        await socket.ConnectAsync(new Uri($"ws://127.0.0.1:{relay.Route("web").Port}/ws"), CancellationToken.None).WaitAsync(L7Test.Timeout);

        var buffer = new byte[1024];
        for (var i = 0; i < 5; i++)
        {
            var message = Encoding.UTF8.GetBytes($"ping {i}");
            await socket.SendAsync(message, WebSocketMessageType.Text, true, CancellationToken.None).WaitAsync(L7Test.Timeout);
            var result = await socket.ReceiveAsync(buffer, CancellationToken.None).WaitAsync(L7Test.Timeout);
            Assert.Equal($"ping {i}", Encoding.UTF8.GetString(buffer, 0, result.Count));
        }

        var session = Assert.Single(relay.App.Runtime.Sessions.Values);
        Assert.Equal("web", session.RouteName);
        Assert.Equal("b1", session.Endpoint?.Id);
        Assert.True(session.BytesIn > 5 * 6 && session.BytesOut >= 5 * 6, $"in {session.BytesIn}, out {session.BytesOut}");
        using (var sessions = await relay.AdminJsonAsync("/api/sessions?route=web"))
        {
            Assert.Equal(1, sessions.RootElement.GetArrayLength());
        }

        await socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "done", CancellationToken.None).WaitAsync(L7Test.Timeout);
        await L7Test.WaitUntilAsync(() => relay.App.Runtime.Sessions.IsEmpty, "the upgraded session ends");
        Assert.Equal(1, relay.Metric("relay_sessions_total{route=\"web\"}"));
    }
}

public class L7ReloadTests
{
    [Fact]
    public async Task Reload_AddsChangesAndRemovesHttpRoutes_BesideTcpRoutes()
    {
        await using var backend = await HttpBackend.StartAsync("b1");
        await using var shadow = await HttpBackend.StartAsync("sh");
        var tcpOnly = $$"""
            {
              "routes": { "tcp": { "listen": "127.0.0.1:0", "cluster": "c" } },
              "clusters": { "c": { "healthCheck": { {{L7Test.NoProbes}} }, "endpoints": { {{L7Test.Endpoint("b1", backend)}} } }
                            {{L7MirrorTests.ShadowCluster(("sh", shadow))}} }
            }
            """;
        await using var relay = await TestRelay.StartAsync(tcpOnly);
        Assert.Empty(relay.App.L7.RouteViews());

        var withHttp = tcpOnly.Replace("""  "routes": { "tcp": { "listen": "127.0.0.1:0", "cluster": "c" } },""",
            """  "routes": { "tcp": { "listen": "127.0.0.1:0", "cluster": "c" }, "web": { "protocol": "http", "listen": "127.0.0.1:0", "cluster": "c" } },""", StringComparison.Ordinal);
        Assert.Empty(await relay.App.ReloadAsync(Parse(relay, withHttp)).WaitAsync(L7Test.Timeout));
        using (var client = L7Test.Client(relay))
        {
            Assert.Equal("b1", await client.GetBackendAsync());
        }

        var mirrored = withHttp.Replace(""" "cluster": "c" } },""", """ "cluster": "c", "mirror": { "shadows": ["sh"] } } },""", StringComparison.Ordinal);
        Assert.NotEqual(withHttp, mirrored);
        Assert.Empty(await relay.App.ReloadAsync(Parse(relay, mirrored)).WaitAsync(L7Test.Timeout));
        using (var client = L7Test.Client(relay))
        {
            Assert.Equal("b1", await client.GetBackendAsync());
        }

        await L7Test.WaitUntilAsync(() => shadow.Requests.Count == 1, "the reloaded route mirrors");
        var port = relay.Route("web").Port;
        Assert.Empty(await relay.App.ReloadAsync(Parse(relay, tcpOnly)).WaitAsync(L7Test.Timeout));
        await relay.Log.WaitForAsync("HttpRouteStopped", L7Test.Timeout);
        Assert.False(relay.App.RouteAddresses.ContainsKey("web"));
        using var probe = new System.Net.Sockets.TcpClient();
        await Assert.ThrowsAnyAsync<System.Net.Sockets.SocketException>(() => probe.ConnectAsync(System.Net.IPAddress.Loopback, port).WaitAsync(L7Test.Timeout));
    }

    /// <summary>Parses a reload, keeping the test relay's own admin settings.</summary>
    private static Relay.Configuration.RelayConfig Parse(TestRelay relay, string json)
    {
        var result = Relay.Configuration.ConfigLoader.Parse(json);
        Assert.True(result.IsValid, string.Join("; ", result.Errors));
        return result.Config! with { Admin = relay.App.Runtime.Snapshot.Config.Admin };
    }
}
