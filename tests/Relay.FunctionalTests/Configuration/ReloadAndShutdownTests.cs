using System.Net.Sockets;
using Relay.FunctionalTests.Infrastructure;
using Relay.FunctionalTests.L4;

namespace Relay.FunctionalTests.Configuration;

public class ReloadAndShutdownTests
{
    [Fact]
    public async Task FileChange_MovesNewSessions_KeepsLiveOnes_AndABadReloadKeepsTheLastGoodConfig()
    {
        await using var first = TestUpstream.Echo();
        await using var second = TestUpstream.Echo();
        var path = Path.Combine(Path.GetTempPath(), $"relay-reload-{Guid.NewGuid():N}.json");
        var json = L4RelayTests.Config(L4RelayTests.Endpoint("one", first.Address));
        await File.WriteAllTextAsync(path, json);
        try
        {
            await using var relay = await TestRelay.StartAsync(json, configPath: path);
            var port = relay.Route("r").Port;

            using var live = await relay.ConnectAsync("r");
            await live.SendAllAsync("a"u8.ToArray());
            Assert.Equal("a"u8.ToArray(), await live.ReceiveExactlyAsync(1));
            Assert.Equal(1, first.Accepted);

            // Same route, now on the same bound port, with the cluster moved to the second upstream.
            var moved = L4RelayTests.Config(L4RelayTests.Endpoint("two", second.Address)).Replace("127.0.0.1:0", $"127.0.0.1:{port}", StringComparison.Ordinal);
            await File.WriteAllTextAsync(path, moved);
            await relay.Log.WaitForAsync("ConfigReloaded", TimeSpan.FromSeconds(15));

            using (var fresh = await relay.ConnectAsync("r"))
            {
                await fresh.SendAllAsync("b"u8.ToArray());
                Assert.Equal("b"u8.ToArray(), await fresh.ReceiveExactlyAsync(1));
            }

            Assert.Equal(1, second.Accepted);
            await live.SendAllAsync("still"u8.ToArray());
            Assert.Equal("still"u8.ToArray(), await live.ReceiveExactlyAsync(5));

            await File.WriteAllTextAsync(path, moved.Replace("\"cluster\": \"c\"", "\"cluster\": \"nope\"", StringComparison.Ordinal));
            var rejected = await relay.Log.WaitForAsync("ConfigReloadRejected", TimeSpan.FromSeconds(15));
            Assert.Contains("routes.r.cluster: cluster \"nope\" is not defined", rejected.Message, StringComparison.Ordinal);
            Assert.Contains("relay_config_reloads_total{result=\"rejected\"} 1", relay.Metrics());

            using var afterBad = await relay.ConnectAsync("r");
            await afterBad.SendAllAsync("c"u8.ToArray());
            Assert.Equal("c"u8.ToArray(), await afterBad.ReceiveExactlyAsync(1));
            Assert.Equal(2, second.Accepted);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public async Task GracefulStop_RefusesNewConnections_AndLetsLiveSessionsFinish()
    {
        await using var upstream = TestUpstream.Echo();
        await using var relay = await TestRelay.StartAsync(L4RelayTests.Config(L4RelayTests.Endpoint("e1", upstream.Address)));
        var address = relay.Route("r");
        using var live = await relay.ConnectAsync("r");
        await live.SendAllAsync("1"u8.ToArray());
        Assert.Equal("1"u8.ToArray(), await live.ReceiveExactlyAsync(1));

        var stopping = relay.App.StopAsync(TimeSpan.FromSeconds(20));
        await relay.Log.WaitForAsync("DrainStarted", TimeSpan.FromSeconds(10));

        // A connection that races the unbind is admitted by the socket but closed without service;
        // soon after, connects are refused outright.
        var refused = false;
        for (var attempt = 0; attempt < 100 && !refused; attempt++)
        {
            using var late = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                await late.ConnectAsync(address).WaitAsync(TimeSpan.FromSeconds(10));
                Assert.Equal(0, await late.ReceiveUntilClosedAsync(TimeSpan.FromSeconds(10)));
                await Task.Delay(50);
            }
            catch (SocketException)
            {
                refused = true;
            }
        }

        Assert.True(refused, "new connections should be refused while draining");

        await live.SendAllAsync("2"u8.ToArray());
        Assert.Equal("2"u8.ToArray(), await live.ReceiveExactlyAsync(1));
        Assert.False(stopping.IsCompleted, "the drain should wait for the live session");

        live.Shutdown(SocketShutdown.Both);
        await stopping.WaitAsync(TimeSpan.FromSeconds(15));
        var finished = await relay.Log.WaitForAsync("DrainFinished", TimeSpan.FromSeconds(5));
        Assert.Contains("0 session(s) aborted", finished.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task DrainTimeout_AbortsSessionsThatOutliveIt()
    {
        await using var upstream = TestUpstream.Echo();
        await using var relay = await TestRelay.StartAsync(L4RelayTests.Config(L4RelayTests.Endpoint("e1", upstream.Address)));
        using var live = await relay.ConnectAsync("r");
        await live.SendAllAsync("1"u8.ToArray());
        Assert.Equal("1"u8.ToArray(), await live.ReceiveExactlyAsync(1));

        var started = DateTime.UtcNow;
        await relay.App.StopAsync(TimeSpan.FromMilliseconds(500)).WaitAsync(TimeSpan.FromSeconds(15));
        Assert.True(DateTime.UtcNow - started >= TimeSpan.FromMilliseconds(450));
        await live.ReceiveUntilClosedAsync(TimeSpan.FromSeconds(10));
    }
}
