using System.Net.Sockets;
using System.Security.Cryptography;
using Relay.FunctionalTests.Infrastructure;

namespace Relay.FunctionalTests.L4;

public class L4RelayTests
{
    internal const string NoProbes = """ "active": { "enabled": false } """;

    internal static string Config(string endpoints, string route = "", string cluster = "", string health = NoProbes) => $$"""
        {
          "routes": { "r": { "listen": "127.0.0.1:0", "cluster": "c" {{route}} } },
          "clusters": { "c": { "healthCheck": { {{health}} } {{cluster}}, "endpoints": { {{endpoints}} } } }
        }
        """;

    internal static string Endpoint(string id, string address) => $$"""  "{{id}}": { "address": "{{address}}" }""";

    [Fact]
    public async Task Relay_CopiesBytesIdenticallyBothWays_AndCountsThemExactly()
    {
        await using var upstream = TestUpstream.Echo();
        await using var relay = await TestRelay.StartAsync(Config(Endpoint("e1", upstream.Address)));
        var payload = RandomNumberGenerator.GetBytes(4 * 1024 * 1024 + 17);

        using var client = await relay.ConnectAsync("r");
        var send = client.SendAllAsync(payload);
        var echoed = await client.ReceiveExactlyAsync(payload.Length);
        await send;
        Assert.Equal(SHA256.HashData(payload), SHA256.HashData(echoed));

        var session = Assert.Single(relay.App.Runtime.Sessions.Values);
        Assert.Equal(payload.Length, session.BytesIn);
        Assert.Equal(payload.Length, session.BytesOut);

        client.Shutdown(SocketShutdown.Both);
        client.Close();
        await relay.Log.WaitForAsync("SessionEnded", TimeSpan.FromSeconds(10));
        Assert.Contains($"relay_bytes_total{{route=\"r\",direction=\"in\"}} {payload.Length}", relay.Metrics());
        Assert.Contains($"relay_bytes_total{{route=\"r\",direction=\"out\"}} {payload.Length}", relay.Metrics());
    }

    [Fact]
    public async Task ClientHalfCloses_StillReceivesTheWholeAnswer()
    {
        // Answers only once the client has finished sending (reads to EOF first), like `cmd | nc`.
        await using var upstream = new TestUpstream(async (socket, ct) =>
        {
            var received = new MemoryStream();
            var buffer = new byte[8192];
            int read;
            while ((read = await socket.ReceiveAsync(buffer, SocketFlags.None, ct)) > 0)
            {
                received.Write(buffer, 0, read);
            }

            var answer = SHA256.HashData(received.ToArray());
            for (var i = 0; i < 64; i++)
            {
                await socket.SendAsync(answer, SocketFlags.None, ct);
            }

            socket.Shutdown(SocketShutdown.Send);
        });
        await using var relay = await TestRelay.StartAsync(Config(Endpoint("e1", upstream.Address)));
        var payload = RandomNumberGenerator.GetBytes(100_000);

        using var client = await relay.ConnectAsync("r");
        await client.SendAllAsync(payload);
        client.Shutdown(SocketShutdown.Send);
        var answer = await client.ReceiveExactlyAsync(64 * 32 + 1);
        Assert.True(64 * 32 == answer.Length, $"got {answer.Length} bytes; relay log: {string.Join(" | ", relay.Log.Entries.Select(e => e.EventName + ": " + e.Message))}");
        var expected = SHA256.HashData(payload);
        for (var i = 0; i < 64; i++)
        {
            Assert.Equal(expected, answer[(i * 32)..((i + 1) * 32)]);
        }
    }

    [Fact]
    public async Task UpstreamThatStopsReading_HoldsTheClientBack_AndLosesNoByte()
    {
        // 32 MiB is more than the sockets' and pipes' buffers on the way hold, so the relay's
        // send to the upstream finds a full buffer and waits for room (the path a plain session
        // takes only under backpressure), then carries on where it stopped.
        await using var upstream = new TestUpstream(async (socket, ct) =>
        {
            await Task.Delay(TimeSpan.FromMilliseconds(700), ct);
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            var buffer = new byte[64 * 1024];
            long total = 0;
            int read;
            while ((read = await socket.ReceiveAsync(buffer, SocketFlags.None, ct)) > 0)
            {
                hash.AppendData(buffer, 0, read);
                total += read;
            }

            var answer = new byte[40];
            hash.GetHashAndReset().CopyTo(answer, 0);
            BitConverter.TryWriteBytes(answer.AsSpan(32), total);
            await socket.SendAsync(answer, SocketFlags.None, ct);
            socket.Shutdown(SocketShutdown.Send);
        });
        await using var relay = await TestRelay.StartAsync(Config(Endpoint("e1", upstream.Address)));
        var payload = RandomNumberGenerator.GetBytes(32 * 1024 * 1024 + 5);

        using var client = await relay.ConnectAsync("r");
        await client.SendAllAsync(payload);
        client.Shutdown(SocketShutdown.Send);
        var answer = await client.ReceiveExactlyAsync(41);
        Assert.Equal(40, answer.Length);
        Assert.Equal(SHA256.HashData(payload), answer[..32]);
        Assert.Equal(payload.Length, BitConverter.ToInt64(answer, 32));
        await relay.Log.WaitForAsync("SessionEnded", TimeSpan.FromSeconds(10));
        Assert.Contains($"relay_bytes_total{{route=\"r\",direction=\"in\"}} {payload.Length}", relay.Metrics());
    }

    [Fact]
    public async Task ManyConcurrentSessions_EachGetsItsOwnBytesBack()
    {
        await using var upstream = TestUpstream.Echo();
        await using var relay = await TestRelay.StartAsync(Config(Endpoint("e1", upstream.Address)));
        var tasks = Enumerable.Range(0, 64).Select(async i =>
        {
            var payload = RandomNumberGenerator.GetBytes(32 * 1024 + i);
            using var client = await relay.ConnectAsync("r");
            var send = client.SendAllAsync(payload);
            var echoed = await client.ReceiveExactlyAsync(payload.Length);
            await send;
            Assert.Equal(payload, echoed);
        });
        await Task.WhenAll(tasks).WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(64, upstream.Accepted);
    }

    [Fact]
    public async Task UpstreamRefuses_ClientIsClosedPromptly_CountedAndLogged()
    {
        var dead = $"127.0.0.1:{Ports.Unused()}";
        await using var relay = await TestRelay.StartAsync(Config(Endpoint("dead", dead)));

        using var client = await relay.ConnectAsync("r");
        var started = DateTime.UtcNow;
        await client.ReceiveUntilClosedAsync(TimeSpan.FromSeconds(10));
        Assert.True(DateTime.UtcNow - started < TimeSpan.FromSeconds(5), "the client should be closed at once");

        var entry = await relay.Log.WaitForAsync("UpstreamConnectFailed", TimeSpan.FromSeconds(5));
        Assert.Contains("UpstreamConnectRefused", entry.Message, StringComparison.Ordinal);
        Assert.Contains("relay_upstream_connect_failures_total{cluster=\"c\",endpoint=\"dead\",reason=\"UpstreamConnectRefused\"} 1", relay.Metrics());
        Assert.Contains("relay_sessions_rejected_total{route=\"r\",reason=\"UpstreamConnectRefused\"} 1", relay.Metrics());
    }

    [Fact]
    public async Task ConnectFailure_RetriesTheNextEndpoint()
    {
        await using var upstream = TestUpstream.Echo();
        var dead = $"127.0.0.1:{Ports.Unused()}";
        await using var relay = await TestRelay.StartAsync(Config(
            Endpoint("dead", dead) + "," + Endpoint("live", upstream.Address),
            cluster: """, "loadBalancing": "roundRobin" """,
            health: """ "active": { "enabled": false }, "passive": { "enabled": false } """));

        for (var i = 0; i < 6; i++)
        {
            using var client = await relay.ConnectAsync("r");
            await client.SendAllAsync("ping"u8.ToArray());
            Assert.Equal("ping"u8.ToArray(), await client.ReceiveExactlyAsync(4));
        }

        Assert.Equal(6, upstream.Accepted);
        Assert.True(relay.Log.Named("UpstreamConnectFailed").Any(), "round robin must have tried the dead endpoint");
    }

    [Fact]
    public async Task UpstreamHangsOnConnect_ClientClosedAtTheConnectTimeout()
    {
        using var hanging = await HangingUpstream.CreateAsync();
        await using var relay = await TestRelay.StartAsync(Config(Endpoint("hang", hanging.Address), cluster: """, "connectTimeout": "300ms" """));

        using var client = await relay.ConnectAsync("r");
        var started = DateTime.UtcNow;
        await client.ReceiveUntilClosedAsync(TimeSpan.FromSeconds(10));
        var elapsed = DateTime.UtcNow - started;
        Assert.True(elapsed >= TimeSpan.FromMilliseconds(250), $"closed after {elapsed.TotalMilliseconds} ms: before the connect timeout?");
        Assert.True(elapsed < TimeSpan.FromSeconds(5), $"closed after {elapsed.TotalMilliseconds} ms");
        var entry = await relay.Log.WaitForAsync("UpstreamConnectFailed", TimeSpan.FromSeconds(5));
        Assert.Contains("UpstreamConnectTimeout", entry.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task UpstreamResetsMidStream_OnlyThatSessionEnds()
    {
        // Echoes, but answers the word "reset" with a TCP reset (linger 0).
        await using var upstream = new TestUpstream(async (socket, ct) =>
        {
            var buffer = new byte[1024];
            while (true)
            {
                var read = await socket.ReceiveAsync(buffer, SocketFlags.None, ct);
                if (read == 0)
                {
                    return;
                }

                if (buffer.AsSpan(0, read).SequenceEqual("reset"u8))
                {
                    socket.LingerState = new LingerOption(true, 0);
                    socket.Close();
                    return;
                }

                await socket.SendAsync(buffer.AsMemory(0, read), SocketFlags.None, ct);
            }
        });
        await using var relay = await TestRelay.StartAsync(Config(Endpoint("e1", upstream.Address)));

        using var bystander = await relay.ConnectAsync("r");
        await bystander.SendAllAsync("hello"u8.ToArray());
        Assert.Equal("hello"u8.ToArray(), await bystander.ReceiveExactlyAsync(5));

        using var victim = await relay.ConnectAsync("r");
        await victim.SendAllAsync("hi"u8.ToArray());
        Assert.Equal("hi"u8.ToArray(), await victim.ReceiveExactlyAsync(2));
        await victim.SendAllAsync("reset"u8.ToArray());
        var started = DateTime.UtcNow;
        await victim.ReceiveUntilClosedAsync(TimeSpan.FromSeconds(10));
        Assert.True(DateTime.UtcNow - started < TimeSpan.FromSeconds(5));

        var logged = await relay.Log.WaitForAsync("SessionUpstreamError", TimeSpan.FromSeconds(5));
        Assert.Contains("UpstreamReset", logged.Message, StringComparison.Ordinal);
        Assert.Contains("relay_upstream_resets_total{cluster=\"c\",endpoint=\"e1\"} 1", relay.Metrics());

        await bystander.SendAllAsync("still here"u8.ToArray());
        Assert.Equal("still here"u8.ToArray(), await bystander.ReceiveExactlyAsync(10));
    }

    [Fact]
    public async Task RouteSessionLimit_RefusesTheConnectionPastIt()
    {
        await using var upstream = TestUpstream.Echo();
        await using var relay = await TestRelay.StartAsync(Config(Endpoint("e1", upstream.Address), route: """, "maxSessions": 2"""));

        using var first = await relay.ConnectAsync("r");
        using var second = await relay.ConnectAsync("r");
        foreach (var client in new[] { first, second })
        {
            await client.SendAllAsync("x"u8.ToArray());
            Assert.Equal("x"u8.ToArray(), await client.ReceiveExactlyAsync(1));
        }

        using var third = await relay.ConnectAsync("r");
        Assert.Equal(0, await third.ReceiveUntilClosedAsync(TimeSpan.FromSeconds(10)));
        Assert.Contains("relay_sessions_rejected_total{route=\"r\",reason=\"RouteSessionLimit\"} 1", relay.Metrics());

        await first.SendAllAsync("y"u8.ToArray());
        Assert.Equal("y"u8.ToArray(), await first.ReceiveExactlyAsync(1));
    }

    [Fact]
    public async Task PerClientLimit_RefusesTheSameAddressPastIt()
    {
        await using var upstream = TestUpstream.Echo();
        await using var relay = await TestRelay.StartAsync(Config(Endpoint("e1", upstream.Address), route: """, "maxSessionsPerClient": 1"""));

        using var first = await relay.ConnectAsync("r");
        await first.SendAllAsync("x"u8.ToArray());
        Assert.Equal("x"u8.ToArray(), await first.ReceiveExactlyAsync(1));
        using var second = await relay.ConnectAsync("r");
        Assert.Equal(0, await second.ReceiveUntilClosedAsync(TimeSpan.FromSeconds(10)));
        Assert.Contains("relay_sessions_rejected_total{route=\"r\",reason=\"ClientSessionLimit\"} 1", relay.Metrics());
    }

    [Fact]
    public async Task ClientSendsNothing_ClosedAtTheIdleTimeout()
    {
        await using var upstream = TestUpstream.Echo();
        await using var relay = await TestRelay.StartAsync(Config(Endpoint("e1", upstream.Address), route: """, "idleTimeout": "400ms" """));

        using var client = await relay.ConnectAsync("r");
        var started = DateTime.UtcNow;
        await client.ReceiveUntilClosedAsync(TimeSpan.FromSeconds(10));
        var elapsed = DateTime.UtcNow - started;
        Assert.InRange(elapsed, TimeSpan.FromMilliseconds(350), TimeSpan.FromSeconds(5));
        await relay.Log.WaitForAsync("SessionIdle", TimeSpan.FromSeconds(5));
        Assert.Contains("relay_sessions_ended_total{route=\"r\",reason=\"IdleTimeout\"} 1", relay.Metrics());
    }

    [Fact]
    public async Task ProxyProtocolV2_UpstreamLearnsTheClientAddress()
    {
        var header = new TaskCompletionSource<byte[]>();
        await using var upstream = new TestUpstream(async (socket, ct) =>
        {
            var bytes = new byte[28];
            var total = 0;
            while (total < bytes.Length)
            {
                var read = await socket.ReceiveAsync(bytes.AsMemory(total), SocketFlags.None, ct);
                if (read == 0)
                {
                    break;
                }

                total += read;
            }

            header.TrySetResult(bytes[..total]);
            await TestUpstream.EchoAsync(socket, ct);
        });
        await using var relay = await TestRelay.StartAsync(Config(Endpoint("e1", upstream.Address), cluster: """, "proxyProtocol": "v2" """));

        using var client = await relay.ConnectAsync("r");
        await client.SendAllAsync("after-header"u8.ToArray());
        var received = await header.Task.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(28, received.Length);
        Assert.Equal(Relay.L4.ProxyProtocolV2.Signature.ToArray(), received[..12]);
        Assert.Equal(0x21, received[12]);
        Assert.Equal(0x11, received[13]);
        var clientPort = ((System.Net.IPEndPoint)client.LocalEndPoint!).Port;
        Assert.Equal(new byte[] { 127, 0, 0, 1 }, received[16..20]);
        Assert.Equal(clientPort, (received[24] << 8) | received[25]);
        Assert.Equal(relay.Route("r").Port, (received[26] << 8) | received[27]);
        Assert.Equal("after-header"u8.ToArray(), await client.ReceiveExactlyAsync(12));
    }

    [Fact]
    public async Task PortAlreadyInUse_StartFailsNamingTheRouteAndTheAddress()
    {
        using var occupier = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        occupier.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0));
        occupier.Listen();
        var port = ((System.Net.IPEndPoint)occupier.LocalEndPoint!).Port;
        var json = Config(Endpoint("e1", "127.0.0.1:1")).Replace("127.0.0.1:0", $"127.0.0.1:{port}", StringComparison.Ordinal);

        var ex = await Assert.ThrowsAsync<Relay.Hosting.RelayStartException>(() => TestRelay.StartAsync(json));
        var error = Assert.Single(ex.Errors);
        Assert.Equal($"routes.r.listen: 127.0.0.1:{port} is already in use", error);
    }
}
