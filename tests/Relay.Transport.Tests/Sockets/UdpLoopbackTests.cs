using System.Net;
using System.Net.Sockets;
using Relay.Transport.Framing;
using Relay.Transport.Multipath;
using Relay.Transport.Sockets;
using Relay.Transport.Tests.Support;

namespace Relay.Transport.Tests.Sockets;

public class UdpLoopbackTests
{
    internal static (UdpDatagramSocket[] Client, UdpDatagramSocket[] Server) SocketPairs(int paths, IPAddress? clientAddress = null, IPAddress? serverAddress = null)
    {
        var client = new UdpDatagramSocket[paths];
        var server = new UdpDatagramSocket[paths];
        for (var i = 0; i < paths; i++)
        {
            var ca = clientAddress ?? IPAddress.Loopback;
            var sa = serverAddress ?? IPAddress.Loopback;
            client[i] = UdpDatagramSocket.Bind(new IPEndPoint(ca, 0), new IPEndPoint(sa, 9));
            server[i] = UdpDatagramSocket.Bind(new IPEndPoint(sa, 0), client[i].LocalEndPoint);
            client[i].SetRemote(server[i].LocalEndPoint);
        }

        return (client, server);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task EmptyDatagramsFromAStranger_AreDroppedAsTruncated_AndEveryPathKeepsReceiving(bool gro)
    {
        var (client, server) = SocketPairs(2);
        await using var pair = new ChannelPair(new MultipathChannelOptions { UseGro = gro }, client, server);
        using (var stranger = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp))
        {
            foreach (var socket in server)
            {
                for (var i = 0; i < 3; i++)
                {
                    stranger.SendTo([], socket.LocalEndPoint);
                }
            }
        }

        await Task.Delay(200, TestContext.Current.CancellationToken);
        var before = pair.Server.GetMetrics().Paths;
        await pair.TransferAndVerifyAsync(2000, 4, 1400, TimeSpan.FromSeconds(30));
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(5);
        while (pair.Server.GetMetrics().Drops.GetValueOrDefault(DropReason.Truncated) < 6 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(10, TestContext.Current.CancellationToken);
        }

        var metrics = pair.Server.GetMetrics();
        Assert.Equal(6, metrics.Drops.GetValueOrDefault(DropReason.Truncated));
        Assert.Equal(6, metrics.TotalDrops);
        Assert.All(metrics.Paths, p => Assert.True(p.PacketsReceived > before[p.Path].PacketsReceived, $"path {p.Path} received nothing after the empty datagrams"));
    }

    [Fact]
    public async Task ThreeUdpPaths_DeliverEveryFrameOnceInOrder()
    {
        var (client, server) = SocketPairs(3);
        await using var pair = new ChannelPair(new MultipathChannelOptions(), client, server);
        await pair.TransferAndVerifyAsync(20_000, 16, 1400, TimeSpan.FromSeconds(60));
        var metrics = pair.Client.GetMetrics();
        Assert.All(metrics.Paths, p => Assert.True(p.PacketsSent > 0, $"path {p.Path} unused"));
        Assert.Equal(20_000, pair.Server.GetMetrics().FramesReceived);
    }

    [Fact]
    public async Task Gso_SendsBlocksInOneCall_AndFramesArrive()
    {
        var (client, server) = SocketPairs(2);
        var options = new MultipathChannelOptions { UseGso = true };
        await using var pair = new ChannelPair(options, client, server);
        if (client[0].GsoSegmentBytes == 0)
        {
            Assert.Skip("UDP GSO (UDP_SEGMENT) is not supported by this kernel.");
        }

        Assert.Equal(options.MaxDatagramBytes, client[0].GsoSegmentBytes);
        await pair.TransferAndVerifyAsync(10_000, 500, 1400, TimeSpan.FromSeconds(60));

        // Blocks of several shards left in GSO sends, whatever size their shards had.
        Assert.True(client.Sum(c => c.GsoSends) > 0, "no send carried several datagrams");

        // The receiver saw separate datagrams (the kernel segmented them) and nothing failed auth.
        var server0 = pair.Server.GetMetrics();
        Assert.True(server0.Paths.Sum(p => p.PacketsReceived) > 1000);
        Assert.Equal(0, server0.TotalDrops);
    }

    [Fact]
    public void Gso_APlainSendAfterSmallSegments_LeavesAsOneDatagram()
    {
        // The segment size belongs to the GSO call that used it: a later plain send (an ack, a repair
        // of an older block with larger shards) must not be cut into pieces of that size.
        using var receiver = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        receiver.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        receiver.ReceiveTimeout = 5000;
        using var sender = UdpDatagramSocket.Bind(new IPEndPoint(IPAddress.Loopback, 0), (IPEndPoint)receiver.LocalEndPoint!);
        if (!sender.TryEnableGso(1400))
        {
            Assert.Skip("UDP GSO (UDP_SEGMENT) is not supported by this kernel.");
        }

        var segments = new byte[3 * 200];
        Random.Shared.NextBytes(segments);
        Assert.True(sender.SendSegments(segments, 200, 3));
        Assert.Equal(1, sender.GsoSends);
        var large = new byte[1200];
        Random.Shared.NextBytes(large);
        Assert.True(sender.Send(large));
        Assert.True(sender.SendSegments(large, 1200, 1));

        var buffer = new byte[2048];
        var sizes = new List<int>();
        for (var i = 0; i < 5; i++)
        {
            var n = receiver.Receive(buffer);
            sizes.Add(n);
            var expected = i < 3 ? segments.AsSpan(i * 200, 200) : large;
            Assert.True(buffer.AsSpan(0, n).SequenceEqual(expected), $"datagram {i}: {n} bytes, sizes so far {string.Join(",", sizes)}");
        }
    }

    [Fact]
    public async Task AnIdleChannel_TicksAtTheProbeInterval_AndWakesForNewFrames()
    {
        var (client, server) = SocketPairs(2);
        await using var pair = new ChannelPair(new MultipathChannelOptions(), client, server);
        await pair.TransferAndVerifyAsync(500, 16, 1400, TimeSpan.FromSeconds(30));

        // Once everything is acked, both ends stop ticking every 2 ms.
        var ct = TestContext.Current.CancellationToken;
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (!(pair.Client.TimerIdle && pair.Server.TimerIdle) && DateTime.UtcNow < deadline)
        {
            await Task.Delay(20, ct);
        }

        Assert.True(pair.Client.TimerIdle && pair.Server.TimerIdle, "the channel never went idle");
        var (clientBefore, serverBefore) = (pair.Client.TimerWakeups, pair.Server.TimerWakeups);
        await Task.Delay(1000, ct);
        var clientTicks = pair.Client.TimerWakeups - clientBefore;
        var serverTicks = pair.Server.TimerWakeups - serverBefore;

        // 20 probes a second; at 2 ms ticks it would be 500. Generous for a loaded machine.
        Assert.True(clientTicks < 100 && serverTicks < 100, $"idle ticks in 1 s: client {clientTicks}, server {serverTicks}");

        // New frames wake it: they arrive, and the paths stay alive through the idle time.
        await pair.TransferAndVerifyAsync(500, 16, 1400, TimeSpan.FromSeconds(30));
        Assert.All(pair.Client.GetMetrics().Paths, p => Assert.True(p.Alive, $"path {p.Path} died while idle"));
    }

    [Fact]
    public async Task GsoAndGro_CoalescedReceivesAreSplit_AndFramesArrive()
    {
        var (client, server) = SocketPairs(2);
        var options = new MultipathChannelOptions { UseGso = true, UseGro = true };
        await using var pair = new ChannelPair(options, client, server);
        if (server[0].ReceivesCoalesced is false || client[0].GsoSegmentBytes == 0)
        {
            Assert.Skip("UDP GSO/GRO socket options are not supported by this kernel.");
        }

        await pair.TransferAndVerifyAsync(10_000, 500, 1400, TimeSpan.FromSeconds(60));
        var drops = pair.Server.GetMetrics().Drops.Where(d => d.Value > 0).ToList();
        Assert.True(drops.Count == 0, "drops: " + string.Join(", ", drops.Select(d => $"{d.Key} {d.Value}")));
        Assert.True(server.Sum(s => s.CoalescedReceives) > 0, "GRO never delivered a coalesced buffer");
    }

    [Fact]
    public async Task GroOnly_PlainDatagramsStillWork()
    {
        var (client, server) = SocketPairs(1);
        await using var pair = new ChannelPair(new MultipathChannelOptions { UseGro = true }, client, server);
        await pair.TransferAndVerifyAsync(2000, 4, 1400, TimeSpan.FromSeconds(30));
        Assert.Equal(0, pair.Server.GetMetrics().TotalDrops);
    }

    [Fact]
    public async Task ChaCha20Poly1305_WorksEndToEnd()
    {
        var (client, server) = SocketPairs(1);
        await using var pair = new ChannelPair(new MultipathChannelOptions { Aead = Relay.Transport.Crypto.AeadAlgorithm.ChaCha20Poly1305 }, client, server);
        await pair.TransferAndVerifyAsync(2000, 4, 3000, TimeSpan.FromSeconds(30));
    }
}
