using System.Net.Sockets;
using Relay.FunctionalTests.Infrastructure;

namespace Relay.FunctionalTests.L4;

/// <summary>Debian's redis-server behind the relay, driven by Debian's redis-cli and redis-benchmark.</summary>
public class RedisThroughRelayTests
{
    [Fact]
    public async Task RedisCliAndRedisBenchmark_WorkThroughTheRelay_WithoutUpstreamErrors()
    {
        var server = ExternalProcess.Find("redis-server");
        var cli = ExternalProcess.Find("redis-cli");
        var benchmark = ExternalProcess.Find("redis-benchmark");
        if (server is null || cli is null || benchmark is null)
        {
            Assert.Skip("needs redis-server, redis-cli and redis-benchmark (Debian packages redis-server, redis-tools; ./run-relay.sh test installs them as root)");
        }

        var redisPort = Ports.Unused();
        using var redis = ExternalProcess.Start(server, "--port", redisPort.ToString(System.Globalization.CultureInfo.InvariantCulture), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no");
        await WaitForPortAsync(redisPort);
        await using var relay = await TestRelay.StartAsync(L4RelayTests.Config(L4RelayTests.Endpoint("redis", $"127.0.0.1:{redisPort}")));
        var port = relay.Route("r").Port.ToString(System.Globalization.CultureInfo.InvariantCulture);

        var set = await ExternalProcess.RunAsync(cli, TimeSpan.FromSeconds(30), "-h", "127.0.0.1", "-p", port, "SET", "relay:key", "through the relay");
        Assert.Equal((0, "OK\n"), (set.ExitCode, set.StdOut));
        var get = await ExternalProcess.RunAsync(cli, TimeSpan.FromSeconds(30), "-h", "127.0.0.1", "-p", port, "GET", "relay:key");
        Assert.Equal("through the relay\n", get.StdOut);

        // A bounded pipelined load: 20,000 requests over 10 connections, with errors checked.
        var load = await ExternalProcess.RunAsync(benchmark, TimeSpan.FromSeconds(120), "-h", "127.0.0.1", "-p", port, "-t", "set,get", "-n", "20000", "-c", "10", "-P", "16", "-q", "--csv");
        Assert.Equal(0, load.ExitCode);
        Assert.Contains("\"SET\"", load.StdOut, StringComparison.Ordinal);
        Assert.Contains("\"GET\"", load.StdOut, StringComparison.Ordinal);

        var direct = await ExternalProcess.RunAsync(cli, TimeSpan.FromSeconds(30), "-h", "127.0.0.1", "-p", redisPort.ToString(System.Globalization.CultureInfo.InvariantCulture), "GET", "relay:key");
        Assert.Equal("through the relay\n", direct.StdOut);
        await relay.Log.WaitForAsync("SessionEnded", TimeSpan.FromSeconds(10));
        Assert.Empty(relay.Log.Named("SessionUpstreamError"));
        Assert.Empty(relay.Log.Named("UpstreamConnectFailed"));
    }

    private static async Task WaitForPortAsync(int port)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        while (true)
        {
            using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                await probe.ConnectAsync(System.Net.IPAddress.Loopback, port);
                return;
            }
            catch (SocketException) when (DateTime.UtcNow < deadline)
            {
                await Task.Delay(50);
            }
        }
    }
}
