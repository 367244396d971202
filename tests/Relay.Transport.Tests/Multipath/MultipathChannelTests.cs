using Relay.Transport.Multipath;
using Relay.Transport.Framing;
using Relay.Transport.Sockets;
using Relay.Transport.Tests.Support;

namespace Relay.Transport.Tests.Multipath;

public class MultipathChannelTests
{
    private static readonly TimeSpan _timeout = TimeSpan.FromSeconds(30);

    private static (InMemoryLink[] Links, ChannelPair Pair) Build(int paths, int seed, Action<LinkImpairment>? impair = null, MultipathChannelOptions? options = null)
    {
        var links = Enumerable.Range(0, paths).Select(i => new InMemoryLink(seed + i)).ToArray();
        foreach (var link in links)
        {
            impair?.Invoke(link.AtoB);
            impair?.Invoke(link.BtoA);
        }

        var pair = new ChannelPair(
            options ?? new MultipathChannelOptions(),
            links.Select(l => (IDatagramSocket)l.A).ToArray(),
            links.Select(l => (IDatagramSocket)l.B).ToArray());
        return (links, pair);
    }

    [Fact]
    public async Task PerfectLink_DeliversEveryFrameOnceInOrder()
    {
        var (_, pair) = Build(1, 1);
        await using var _ = pair;
        await pair.TransferAndVerifyAsync(3000, 1, 3000, _timeout);
        var metrics = pair.Server.GetMetrics();
        Assert.Equal(3000, metrics.FramesReceived);
        Assert.Equal(0, metrics.TotalDrops);
    }

    [Theory]
    [InlineData(0.05, 11)]
    [InlineData(0.20, 12)]
    [InlineData(0.30, 13)]
    public async Task LossyDuplicatingReorderingLinks_DeliverEveryFrameOnceInOrder(double loss, int seed)
    {
        var (_, pair) = Build(3, seed, l =>
        {
            l.Loss = loss;
            l.Duplicate = 0.05;
            l.Reorder = 0.1;
            l.Delay = TimeSpan.FromMilliseconds(1);
        });
        await using var _ = pair;
        await pair.TransferAndVerifyAsync(2000, 1, 2000, _timeout);
        var server = pair.Server.GetMetrics();
        Assert.True(server.FecRecoveredShards > 0, "FEC should have rebuilt some shards");
        Assert.True(server.DuplicateShards > 0, "duplicates were injected and must be recognised");
    }

    [Fact]
    public async Task OnePathDead_FramesStillArrive_AndPathIsExcluded()
    {
        var (links, pair) = Build(3, 21, l => l.Delay = TimeSpan.FromMilliseconds(1));
        await using var _ = pair;
        links[1].AtoB.Dead = true;
        links[1].BtoA.Dead = true;
        await pair.TransferAndVerifyAsync(2000, 100, 1500, _timeout);

        // Exclusion takes a few probe intervals; wait for it (bounded) and check the dead path is out.
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(5);
        while (pair.Client.GetMetrics().Paths[1].Alive && DateTime.UtcNow < deadline)
        {
            await Task.Delay(20, TestContext.Current.CancellationToken);
        }

        // A live path can be excluded for a moment when a burst delays its probe answers (CI saw it
        // once); it must be readmitted while the dead one stays out.
        deadline = DateTime.UtcNow + TimeSpan.FromSeconds(5);
        while (!(pair.Client.GetMetrics().Paths[0].Alive && pair.Client.GetMetrics().Paths[2].Alive) && DateTime.UtcNow < deadline)
        {
            await Task.Delay(20, TestContext.Current.CancellationToken);
        }

        var client = pair.Client.GetMetrics();
        Assert.False(client.Paths[1].Alive);
        Assert.True(client.Paths[0].Alive && client.Paths[2].Alive);

        // Readmission: bring the path back, it must come alive again after answered probes.
        links[1].AtoB.Dead = false;
        links[1].BtoA.Dead = false;
        deadline = DateTime.UtcNow + TimeSpan.FromSeconds(5);
        while (!pair.Client.GetMetrics().Paths[1].Alive && DateTime.UtcNow < deadline)
        {
            await Task.Delay(20, TestContext.Current.CancellationToken);
        }

        Assert.True(pair.Client.GetMetrics().Paths[1].Alive);
    }

    [Theory]
    [InlineData(PathLossParity.AfterPathFailure, true)]
    [InlineData(PathLossParity.Never, false)]
    public async Task ParityCoversAWholePath_OnlyOnceAPathHasDied(PathLossParity policy, bool raisedAfterFailure)
    {
        var (links, pair) = Build(3, 31, l => l.Delay = TimeSpan.FromMilliseconds(1), new MultipathChannelOptions { PathLossParity = policy });
        await using var _ = pair;
        await pair.TransferAndVerifyAsync(600, 1000, 1400, _timeout);
        var before = pair.Client.GetMetrics();

        // Sized by the loss alone (1% assumed, nothing lost): far below a path's share of the block.
        Assert.True(before.CurrentParityShards <= 2, $"k+m {before.CurrentDataShards}+{before.CurrentParityShards} before any path failed");

        // Path 2 dies for good while 0 and 1 keep answering: a path failure. The dead path's loss no
        // longer counts, so only the policy can raise the parity on the two live, clean paths.
        links[2].AtoB.Dead = true;
        links[2].BtoA.Dead = true;
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(5);
        while (pair.Client.GetMetrics().Paths[2].Alive && DateTime.UtcNow < deadline)
        {
            await Task.Delay(20, TestContext.Current.CancellationToken);
        }

        Assert.False(pair.Client.GetMetrics().Paths[2].Alive);

        // A path counts as failed once it has stayed dead for PathFailureConfirmation (1 s) while the
        // others answer; shorter silences are a busy host.
        await Task.Delay(TimeSpan.FromSeconds(1.5), TestContext.Current.CancellationToken);
        await pair.TransferAndVerifyAsync(600, 1000, 1400, _timeout);
        var after = pair.Client.GetMetrics();
        var shape = $"k+m {after.CurrentDataShards}+{after.CurrentParityShards} after path 2 died";
        // Two live paths: covering one path's half of a block takes m >= k, up to the cap of 8. Loss
        // alone asks for much less (the live paths lose nothing; a small last block may still get a
        // few parity shards while the dead path's last datagrams are counted).
        var pathBound = Math.Min(8, after.CurrentDataShards);
        if (raisedAfterFailure)
        {
            Assert.True(after.CurrentParityShards >= pathBound, shape);
        }
        else
        {
            Assert.True(after.CurrentParityShards < Math.Max(4, pathBound), shape);
        }
    }

    [Fact]
    public async Task ReceiverNotReading_SenderIsHeldBack_ThenResumes()
    {
        var options = new MultipathChannelOptions { SendWindowBlocks = 8, ReceiveWindowBlocks = 8 };
        var (_, pair) = Build(2, 31, options: options);
        await using var _ = pair;
        using var cts = new CancellationTokenSource(_timeout);
        var frame = new byte[4000];
        var sent = 0;
        var blocked = false;
        Task? held = null;
        for (var i = 0; i < 10_000; i++)
        {
            var pending = pair.Client.SendAsync(frame, cts.Token).AsTask();
            if (!pending.IsCompleted)
            {
                await Task.WhenAny(pending, Task.Delay(300, cts.Token));
                if (!pending.IsCompleted)
                {
                    blocked = true;
                    held = pending;
                    break;
                }
            }

            sent++;
        }

        Assert.True(blocked, "SendAsync never applied backpressure");
        Assert.InRange(sent, 10, 16 * 8 * 6); // bounded by both windows, far below 10,000

        var buffer = new byte[65536];
        for (var i = 0; i < sent; i++)
        {
            Assert.Equal(4000, await pair.Server.ReceiveAsync(buffer, cts.Token));
        }

        // The window reopened: the held send and later ones complete, and their frames arrive.
        await held!.WaitAsync(TimeSpan.FromSeconds(5), cts.Token);
        await pair.Client.SendAsync(frame, cts.Token).AsTask().WaitAsync(TimeSpan.FromSeconds(5), cts.Token);
        pair.Client.Flush();
        Assert.Equal(4000, await pair.Server.ReceiveAsync(buffer, cts.Token).AsTask().WaitAsync(TimeSpan.FromSeconds(5), cts.Token));
    }

    [Fact]
    public async Task DrainAsync_CompletesOnceEverythingIsAcknowledged()
    {
        var (_, pair) = Build(2, 61, l =>
        {
            l.Loss = 0.1;
            l.Delay = TimeSpan.FromMilliseconds(2);
        });
        await using var _ = pair;
        using var cts = new CancellationTokenSource(_timeout);
        var buffer = new byte[65536];
        var reader = Task.Run(async () =>
        {
            for (var i = 0; i < 500; i++)
            {
                await pair.Server.ReceiveAsync(buffer, cts.Token);
            }
        }, cts.Token);
        for (var i = 0; i < 500; i++)
        {
            await pair.Client.SendAsync(ChannelPair.Frame(i, 700), cts.Token);
        }

        await pair.Client.DrainAsync(cts.Token).WaitAsync(TimeSpan.FromSeconds(20), cts.Token);

        // Acknowledged means decoded at the receiver: all 500 frames are there to read.
        Assert.True(pair.Server.GetMetrics().BlocksDecoded >= pair.Client.GetMetrics().BlocksSent);
        await reader.WaitAsync(TimeSpan.FromSeconds(10), cts.Token);
    }

    [Fact]
    public async Task CompressibleFrames_ArriveIntact()
    {
        var (links, pair) = Build(1, 41);
        await using var _ = pair;
        using var cts = new CancellationTokenSource(_timeout);
        var frame = System.Text.Encoding.ASCII.GetBytes(string.Concat(Enumerable.Repeat("relay relay relay ", 100)));
        for (var i = 0; i < 200; i++)
        {
            await pair.Client.SendAsync(frame, cts.Token);
        }

        pair.Client.Flush();
        var buffer = new byte[65536];
        for (var i = 0; i < 200; i++)
        {
            var n = await pair.Server.ReceiveAsync(buffer, cts.Token);
            Assert.Equal(frame, buffer.AsSpan(0, n).ToArray());
        }

        // 200 x 1.8 KB raw would need ~250 datagrams; compression must have cut that down.
        Assert.True(links[0].A.Sent < 150, $"sent {links[0].A.Sent} datagrams");
    }

    [Fact]
    public async Task ForgedReplayedTruncatedWrongVersion_AreDroppedAndCountedByReason()
    {
        var (links, pair) = Build(1, 51);
        await using var _ = pair;
        links[0].TapEnabled = true;
        await pair.TransferAndVerifyAsync(50, 10, 500, _timeout);
        links[0].TapEnabled = false;
        byte[] original;
        lock (links[0].TapAtoB)
        {
            original = links[0].TapAtoB.First(d => d[1] == (byte)PacketType.Data);
        }

        var before = pair.Server.GetMetrics().Drops;
        var forged = (byte[])original.Clone();
        forged[^20] ^= 0x40;
        forged[4] = 0x01; // fresh packet number so it reaches the AEAD
        var wrongVersion = (byte[])original.Clone();
        wrongVersion[0] = 2;
        links[0].B.Inject(original);                 // replay
        links[0].B.Inject(forged);                   // forgery
        links[0].B.Inject(original[..20]);           // truncated
        links[0].B.Inject(wrongVersion);             // wrong version
        links[0].B.Inject(new byte[5000]);           // oversize

        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(5);
        IReadOnlyDictionary<DropReason, long> after;
        do
        {
            await Task.Delay(20, TestContext.Current.CancellationToken);
            after = pair.Server.GetMetrics().Drops;
        }
        while (after.Values.Sum() - before.Values.Sum() < 5 && DateTime.UtcNow < deadline);

        Assert.Equal(1, after[DropReason.Replayed] - before[DropReason.Replayed]);
        Assert.Equal(1, after[DropReason.AuthFailed] - before[DropReason.AuthFailed]);
        Assert.Equal(1, after[DropReason.Truncated] - before[DropReason.Truncated]);
        Assert.Equal(1, after[DropReason.WrongVersion] - before[DropReason.WrongVersion]);
        Assert.Equal(1, after[DropReason.Oversize] - before[DropReason.Oversize]);
        Assert.Equal(50, pair.Server.GetMetrics().FramesReceived);
    }
}
