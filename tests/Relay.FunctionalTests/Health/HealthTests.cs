using System.Text.Json;
using Relay.FunctionalTests.Infrastructure;
using Relay.FunctionalTests.L4;

namespace Relay.FunctionalTests.Health;

public class HealthTests
{
    // No probes; two passive failures in a row eject an endpoint for a minute.
    private const string EjectAfterTwo = L4RelayTests.NoProbes + """, "passive": { "failureThreshold": 2, "ejectionTime": "1m" } """;

    private const string FastProbes = """ "active": { "interval": "100ms", "timeout": "80ms", "healthyThreshold": 1, "unhealthyThreshold": 2 } """;

    [Fact]
    public async Task ActiveProbes_MarkADeadEndpointUnhealthy_AndNewSessionsAvoidIt()
    {
        await using var live = TestUpstream.Echo();
        var dead = $"127.0.0.1:{Ports.Unused()}";
        await using var relay = await TestRelay.StartAsync(L4RelayTests.Config(
            L4RelayTests.Endpoint("dead", dead) + "," + L4RelayTests.Endpoint("live", live.Address),
            cluster: """, "loadBalancing": "roundRobin" """,
            health: FastProbes + """, "passive": { "enabled": false } """));

        var changed = await relay.Log.WaitForAsync("EndpointHealthChanged", TimeSpan.FromSeconds(10));
        Assert.Contains("dead", changed.Message, StringComparison.Ordinal);
        Assert.Contains("unhealthy", changed.Message, StringComparison.Ordinal);

        using var endpoints = JsonDocument.Parse(await relay.Http.GetStringAsync("/api/endpoints").WaitAsync(TimeSpan.FromSeconds(10)));
        var byId = endpoints.RootElement.EnumerateArray().ToDictionary(e => e.GetProperty("id").GetString()!);
        Assert.Equal("unhealthy", byId["dead"].GetProperty("health").GetString());
        Assert.Equal("healthy", byId["live"].GetProperty("health").GetString());
        Assert.Contains("relay_endpoint_healthy{cluster=\"c\",endpoint=\"dead\"} 0", relay.Metrics());

        var failuresBefore = relay.Log.Named("UpstreamConnectFailed").Count();
        for (var i = 0; i < 4; i++)
        {
            using var client = await relay.ConnectAsync("r");
            await client.SendAllAsync("p"u8.ToArray());
            Assert.Equal("p"u8.ToArray(), await client.ReceiveExactlyAsync(1));
        }

        Assert.Equal(failuresBefore, relay.Log.Named("UpstreamConnectFailed").Count());
    }

    [Fact]
    public async Task AnEndpointThatComesBack_IsHealthyAgain()
    {
        var port = Ports.Unused();
        await using var relay = await TestRelay.StartAsync(L4RelayTests.Config(L4RelayTests.Endpoint("e1", $"127.0.0.1:{port}"), health: FastProbes));
        await relay.Log.WaitForAsync("EndpointHealthChanged", TimeSpan.FromSeconds(10), e => e.Message.Contains("unhealthy", StringComparison.Ordinal));
        using var http = new HttpClient { BaseAddress = relay.App.AdminAddress };
        using var readyWhileDown = await http.GetAsync("/readyz").WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(System.Net.HttpStatusCode.ServiceUnavailable, readyWhileDown.StatusCode);

        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, port);
        listener.Start();
        await relay.Log.WaitForAsync("EndpointHealthChanged", TimeSpan.FromSeconds(10), e => e.Message.Contains("now healthy", StringComparison.Ordinal));
    }

    [Fact]
    public async Task PassiveFailures_EjectTheEndpoint_AndNewSessionsAvoidIt()
    {
        await using var live = TestUpstream.Echo();
        var dead = $"127.0.0.1:{Ports.Unused()}";
        await using var relay = await TestRelay.StartAsync(L4RelayTests.Config(
            L4RelayTests.Endpoint("dead", dead) + "," + L4RelayTests.Endpoint("live", live.Address),
            cluster: """, "loadBalancing": "roundRobin" """,
            health: EjectAfterTwo));

        // Every session lands on "live", on the first try or after a refused connect to "dead".
        for (var i = 0; i < 8; i++)
        {
            using var client = await relay.ConnectAsync("r");
            await client.SendAllAsync("p"u8.ToArray());
            Assert.Equal("p"u8.ToArray(), await client.ReceiveExactlyAsync(1));
        }

        var ejected = await relay.Log.WaitForAsync("EndpointEjected", TimeSpan.FromSeconds(5));
        Assert.Contains("dead", ejected.Message, StringComparison.Ordinal);
        Assert.Equal(2, relay.Log.Named("UpstreamConnectFailed").Count());
        Assert.DoesNotContain("relay_cluster_panic_picks_total{cluster=\"c\"}", relay.Metrics(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task WhenEveryEndpointIsEjected_SessionsStillReachThem_AndAreCounted()
    {
        // Takes input and resets without a word, as iperf3's server ends an upload stream: two of
        // those eject the cluster's only endpoint, and the next session must still reach it.
        var accepted = 0;
        await using var upstream = new TestUpstream(async (socket, ct) =>
        {
            Interlocked.Increment(ref accepted);
            var buffer = new byte[16];
            await socket.ReceiveAsync(buffer, System.Net.Sockets.SocketFlags.None, ct);
            Reset(socket);
        });
        await using var relay = await TestRelay.StartAsync(L4RelayTests.Config(
            L4RelayTests.Endpoint("e1", upstream.Address),
            health: EjectAfterTwo));

        for (var i = 0; i < 3; i++)
        {
            if (i == 2)
            {
                await relay.Log.WaitForAsync("EndpointEjected", TimeSpan.FromSeconds(5));
            }

            using var client = await relay.ConnectAsync("r");
            await client.SendAllAsync("x"u8.ToArray());
            Assert.Equal(0, await client.ReceiveUntilClosedAsync(TimeSpan.FromSeconds(10)));
        }

        Assert.Equal(3, Volatile.Read(ref accepted));
        var metrics = relay.Metrics();
        Assert.Contains("relay_cluster_panic_picks_total{cluster=\"c\"} 1", metrics, StringComparison.Ordinal);
        Assert.DoesNotContain("NoHealthyEndpoint", metrics, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ResetsAfterAnAnswer_DoNotEject_ButResetsBeforeOneDo()
    {
        // Answers one byte, then resets, like iperf3 ending a test; or resets at once ("mute").
        var mute = false;
        await using var upstream = new TestUpstream(async (socket, ct) =>
        {
            var buffer = new byte[16];
            if (await socket.ReceiveAsync(buffer, System.Net.Sockets.SocketFlags.None, ct) > 0 && !Volatile.Read(ref mute))
            {
                await socket.SendAsync("!"u8.ToArray(), System.Net.Sockets.SocketFlags.None, ct);
                await Task.Delay(50, ct);
            }

            Reset(socket);
        });
        await using var relay = await TestRelay.StartAsync(L4RelayTests.Config(
            L4RelayTests.Endpoint("e1", upstream.Address),
            health: EjectAfterTwo));

        for (var i = 0; i < 4; i++)
        {
            using var client = await relay.ConnectAsync("r");
            await client.SendAllAsync("x"u8.ToArray());
            Assert.Equal("!"u8.ToArray(), await client.ReceiveExactlyAsync(1));
            await client.ReceiveUntilClosedAsync(TimeSpan.FromSeconds(10));
        }

        await relay.Log.WaitForAsync("SessionUpstreamError", TimeSpan.FromSeconds(5));
        Assert.False(relay.Log.Has("EndpointEjected"), "resets after an answer must not eject");

        Volatile.Write(ref mute, true);
        for (var i = 0; i < 2; i++)
        {
            using var client = await relay.ConnectAsync("r");
            await client.SendAllAsync("x"u8.ToArray());
            Assert.Equal(0, await client.ReceiveUntilClosedAsync(TimeSpan.FromSeconds(10)));
        }

        await relay.Log.WaitForAsync("EndpointEjected", TimeSpan.FromSeconds(5));
    }

    /// <summary>Closes with a reset (linger 0), as iperf3's server ends a stream.</summary>
    private static void Reset(System.Net.Sockets.Socket socket)
    {
        socket.LingerState = new System.Net.Sockets.LingerOption(true, 0);
        socket.Close();
    }
}
