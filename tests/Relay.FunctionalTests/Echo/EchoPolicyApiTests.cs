using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Relay.FunctionalTests.Infrastructure;

namespace Relay.FunctionalTests.Echo;

/// <summary>
/// Issue 5's echo policy API on a live relay with agents: read a route's policy, estimate what a
/// proposed one would cost before applying it, refuse a bad one with its key named, and apply a good
/// one to the sessions that start afterwards only.
/// </summary>
[Collection(EchoTests.Name)]
public sealed class EchoPolicyApiTests
{
    private const string Policy = """{ "codec": "lines", "shadows": 1, "interval": "2ms", "ackTimeout": "3s" }""";

    [Fact]
    public async Task PoliciesAreRead_Estimated_RefusedWithTheKeyNamed_AndAppliedToNewSessionsOnly()
    {
        var backends = await BackendProcess.StartSampleServersAsync(3);
        await using var bed = await EchoTestbed.StartAsync(backends, Policy);
        var http = bed.Relay.Http;
        var sockets = new List<Socket>();
        try
        {
            var clients = Enumerable.Range(0, 2).Select(i => new ScriptedClient(500 + i, 10)).ToList();
            foreach (var client in clients)
            {
                var socket = await bed.Relay.ConnectAsync("svc");
                sockets.Add(socket);
                await client.RunAsync(socket, 0, 10);
            }

            await bed.WaitUntilAsync(() => bed.AllShadowsReady(1), "every session has a Ready shadow");

            using (var all = await http.GetJsonAsync("/api/echo-policies"))
            {
                var entry = Assert.Single(all.RootElement.EnumerateArray());
                Assert.Equal("svc", entry.GetProperty("route").GetString());
                Assert.Equal(("lines", 1, "2ms"), PolicyOf(entry));
            }

            using (var missing = await http.GetJsonAsync("/api/echo-policies/nope", HttpStatusCode.NotFound))
            {
                Assert.Equal("no route \"nope\"", missing.RootElement.GetProperty("error").GetString());
            }

            // The live policy's cost, from the two sessions' traffic and the three agents.
            using (var estimate = await http.GetJsonAsync("/api/echo-policies/svc/estimate"))
            {
                var root = estimate.RootElement;
                Assert.Equal(("lines", 1, "2ms"), PolicyOf(root));
                Assert.Equal(2, root.GetProperty("sessions").GetInt32());
                Assert.True(root.GetProperty("inputBytesPerSecond").GetDouble() > 0, root.ToString());
                Assert.True(root.GetProperty("echoBandwidthBytesPerSecond").GetDouble() > 0, root.ToString());
                Assert.True(root.GetProperty("echoLogMemoryBytes").GetInt64() > 0, root.ToString());
                Assert.Equal(3, root.GetProperty("availableHosts").GetInt32());
                Assert.All(root.GetProperty("hosts").EnumerateArray(), h => Assert.True(h.GetProperty("available").GetBoolean(), h.ToString()));
                Assert.Empty(root.GetProperty("warnings").EnumerateArray());
            }

            // A proposal is estimated, not applied; one that needs more hosts than there are says so.
            using (var proposal = await http.SendAsync(HttpMethod.Post, "/api/echo-policies/svc/estimate", HttpStatusCode.OK, """{ "codec": "lines", "shadows": 3 }"""))
            {
                Assert.Equal(3, proposal.RootElement.GetProperty("policy").GetProperty("shadows").GetInt32());
                var warning = Assert.Single(proposal.RootElement.GetProperty("warnings").EnumerateArray()).GetString();
                Assert.Contains("3 shadow(s) per session need at least 4", warning, StringComparison.Ordinal);
            }

            using (var bad = await http.SendAsync(HttpMethod.Put, "/api/echo-policies/svc", HttpStatusCode.BadRequest, """{ "codec": "lines", "shadows": "two" }"""))
            {
                Assert.Contains(bad.RootElement.GetProperty("errors").EnumerateArray(), e => e.GetString()!.StartsWith("policy.shadows:", StringComparison.Ordinal));
            }

            using (var unchanged = await http.GetJsonAsync("/api/echo-policies/svc"))
            {
                Assert.Equal(("lines", 1, "2ms"), PolicyOf(unchanged.RootElement));
            }

            // Applied: sessions that start now get two shadows; the live ones keep their policy.
            using (var applied = await http.SendAsync(HttpMethod.Put, "/api/echo-policies/svc", HttpStatusCode.OK, """{ "codec": "lines", "shadows": 2, "interval": "5ms" }"""))
            {
                Assert.Equal(("lines", 2, "5ms"), PolicyOf(applied.RootElement));
                Assert.StartsWith("sessions that start from now on", applied.RootElement.GetProperty("appliesTo").GetString(), StringComparison.Ordinal);
            }

            var before = bed.Relay.App.Echo.Sessions.Select(s => s.Session.Id).ToHashSet();
            var late = new ScriptedClient(600, 10);
            var lateSocket = await bed.Relay.ConnectAsync("svc");
            sockets.Add(lateSocket);
            await late.RunAsync(lateSocket, 0, 10);
            var lateId = await WaitForNewSessionAsync(bed, before);
            await bed.WaitUntilAsync(() => bed.Relay.App.Echo.Sessions.Single(s => s.Session.Id == lateId).Echo.Shadows.Count(s => s.State == global::Relay.Echo.ShadowState.Ready) == 2, "the new session has two Ready shadows");

            using (var session = await http.GetJsonAsync($"/api/sessions/{lateId}"))
            {
                var echo = session.RootElement.GetProperty("echo");
                Assert.Equal(2, echo.GetProperty("codec").GetProperty("shadows").GetInt32());
                Assert.Equal(2, echo.GetProperty("shadows").GetArrayLength());
            }

            foreach (var id in before)
            {
                using var old = await http.GetJsonAsync($"/api/sessions/{id}");
                var echo = old.RootElement.GetProperty("echo");
                Assert.Equal(1, echo.GetProperty("codec").GetProperty("shadows").GetInt32());
                Assert.Single(echo.GetProperty("shadows").EnumerateArray());
            }
        }
        finally
        {
            foreach (var socket in sockets)
            {
                socket.Dispose();
            }
        }
    }

    private static (string Codec, int Shadows, string Interval) PolicyOf(JsonElement entry)
    {
        var policy = entry.GetProperty("policy");
        return (policy.GetProperty("codec").GetString()!, policy.GetProperty("shadows").GetInt32(), policy.GetProperty("interval").GetString()!);
    }

    private static async Task<long> WaitForNewSessionAsync(EchoTestbed bed, HashSet<long> before)
    {
        long id = 0;
        await bed.WaitUntilAsync(
            () =>
            {
                id = bed.Relay.App.Echo.Sessions.Select(s => s.Session.Id).FirstOrDefault(i => !before.Contains(i));
                return id != 0;
            },
            "the new session is echoed");
        return id;
    }
}
