using System.Diagnostics;
using System.Net.Sockets;
using Relay.Echo;
using Relay.Transport.Multipath;
using Relay.Transport.Tests.Support;

namespace Relay.FunctionalTests.Echo;

/// <summary>
/// The echo channel's two UDP paths run through veth pairs between two network namespaces with
/// nftables random drop (relay's paths in A, the agents' in B); the control connections, backends
/// and clients stay on loopback. Needs root, ip and nft; skips otherwise.
/// </summary>
[Collection(EchoTests.Name)]
public sealed class LossyPathTests
{
    private const string Policy = """{ "codec": "lines", "shadows": 1, "interval": "2ms", "ackTimeout": "3s" }""";
    private const int Clients = 10;
    private const int Warmup = 4;
    private const int LossyBursts = 300;
    private const int CutBursts = 300;
    private const int Bursts = Warmup + LossyBursts + CutBursts + 100;
    private static readonly TimeSpan s_pause = TimeSpan.FromMilliseconds(10);

    [Fact]
    public async Task TwentyPercentLossOnOnePathKeepsShadowsReady_AndWithThatPathCutEchoContinuesOnTheOther()
    {
        var unavailable = NetNamespaceLab.Unavailable();
        if (unavailable is not null)
        {
            Assert.Skip($"needs network namespaces and nftables: {unavailable}");
        }

        using var lab = NetNamespaceLab.Create(2);
        lab.SetPathLoss(0, 20);
        var backends = await BackendProcess.StartSampleServersAsync(2);
        await using var bed = await EchoTestbed.StartAsync(backends, Policy, options: new EchoTestbedOptions
        {
            RelayPathSocketFactory = (path, placeholder) => lab.CreateSocket(lab.NamespaceA, NetNamespaceLab.AddressA(path), placeholder),
            AgentPathSocketFactory = (_, path, relay) => lab.CreateSocket(lab.NamespaceB, NetNamespaceLab.AddressB(path), relay),
        });
        var link = bed.Relay.App.Echo.Links.Single(l => l.Endpoint.Id == "b");
        var paths = link.Channel!.GetMetrics().Paths;
        Assert.Equal(2, paths.Count);

        // Every session's primary is a and its shadow is on b: drain b while the clients connect.
        await bed.Relay.Http.PostAsync("/api/endpoints/b/drain", null);
        var clients = Enumerable.Range(0, Clients).Select(i => new ScriptedClient(7000 + i, Bursts)).ToList();
        var sockets = new List<Socket>();
        var sampler = new CancellationTokenSource();
        try
        {
            foreach (var client in clients)
            {
                var socket = await bed.Relay.ConnectAsync("svc");
                sockets.Add(socket);
                await client.RunAsync(socket, 0, Warmup);
            }

            await bed.Relay.Http.PostAsync("/api/endpoints/b/undrain", null);
            await bed.WaitUntilAsync(
                () => bed.Relay.App.Echo.Sessions.Count() == Clients && bed.Relay.App.Echo.Sessions.All(s => s.Endpoint.Id == "a") && bed.AllShadowsReady(1),
                "every session is on a with a Ready shadow on b (20% loss on path 1)");

            // From here on no shadow may leave Ready until the primary is killed: sample the states as well as reading the log.
            var notReady = new List<string>();
            var sampling = Task.Run(async () =>
            {
                while (!sampler.IsCancellationRequested)
                {
                    foreach (var session in bed.Relay.App.Echo.Sessions)
                    {
                        foreach (var shadow in session.Echo.Shadows)
                        {
                            if (shadow.State != ShadowState.Ready)
                            {
                                lock (notReady)
                                {
                                    notReady.Add($"session {session.Session.Id} shadow on {shadow.Endpoint.Id}: {shadow.Snapshot()}");
                                }
                            }
                        }
                    }

                    await Task.Delay(25);
                }
            });

            // 1. 20% random loss on path 1, path 0 clean.
            var lossy = Stopwatch.StartNew();
            await Task.WhenAll(clients.Select((c, i) => c.RunAsync(sockets[i], Warmup, Warmup + LossyBursts, s_pause))).WaitAsync(TimeSpan.FromSeconds(120));
            lossy.Stop();
            await WaitAllAckedAsync(bed, "every shadow acks the whole log under 20% loss on path 1");
            var afterLoss = link.Channel!.GetMetrics();
            Assert.True(afterLoss.Paths[1].LossRate > 0 || afterLoss.Paths[1].LossForecast > 0, $"the relay's channel measured no loss on path 1: {Describe(afterLoss)}");
            Assert.True(afterLoss.FecRecoveredShards + afterLoss.RetransmittedShards > 0, $"the relay's channel neither rebuilt nor resent a shard: {Describe(afterLoss)}");
            AssertNoneLeftReady(bed, notReady, $"under 20% loss on path 1 ({lossy.Elapsed.TotalSeconds:F1} s)");

            // 2. Path 1 cut: echo goes on over path 0 alone.
            lab.SetPathLoss(0, 100);
            var ackedBefore = bed.Relay.App.Echo.Sessions.ToDictionary(s => s.Session.Id, s => s.Echo.Shadows.Single().Snapshot().AckedBytes);
            var path0Before = afterLoss.Paths[0].PacketsSent;
            var cut = Stopwatch.StartNew();
            await Task.WhenAll(clients.Select((c, i) => c.RunAsync(sockets[i], Warmup + LossyBursts, Warmup + LossyBursts + CutBursts, s_pause))).WaitAsync(TimeSpan.FromSeconds(120));
            cut.Stop();
            await WaitAllAckedAsync(bed, "every shadow acks the whole log with path 1 cut");
            foreach (var session in bed.Relay.App.Echo.Sessions)
            {
                var shadow = session.Echo.Shadows.Single().Snapshot();
                Assert.True(shadow.AckedBytes > ackedBefore[session.Session.Id], $"session {session.Session.Id}: acked bytes did not advance with path 1 cut ({ackedBefore[session.Session.Id]} -> {shadow.AckedBytes})");
                Assert.Equal(ShadowState.Ready, shadow.State);
            }

            await bed.WaitUntilAsync(() => !link.Channel!.GetMetrics().Paths[1].Alive, "the relay's channel marks path 1 dead", TimeSpan.FromSeconds(15));
            var afterCut = link.Channel!.GetMetrics();
            Assert.True(afterCut.Paths[0].Alive, $"path 0 is not alive: {Describe(afterCut)}");
            Assert.True(afterCut.Paths[0].PacketsSent > path0Before, $"nothing went over path 0 while path 1 was cut: {Describe(afterCut)}");
            await sampler.CancelAsync();
            await sampling.WaitAsync(TimeSpan.FromSeconds(10));
            AssertNoneLeftReady(bed, notReady, $"with path 1 cut ({cut.Elapsed.TotalSeconds:F1} s)");

            // 3. kill -9 the primary under load: every session splices onto its shadow, whose echo came over path 0 alone.
            var from = Warmup + LossyBursts + CutBursts;
            var runs = clients.Select((c, i) => c.RunAsync(sockets[i], from, Bursts, TimeSpan.FromMilliseconds(3))).ToList();
            await bed.WaitUntilAsync(() => clients.All(c => c.Completed >= from + 20), "every client is 20 bursts into the last stretch");
            backends[0].Kill();
            await Task.WhenAll(runs).WaitAsync(TimeSpan.FromSeconds(90));

            for (var i = 0; i < Clients; i++)
            {
                var expected = await clients[i].ReferenceAsync(backends[1].EndPoint);
                Assert.True(expected.AsSpan().SequenceEqual(clients[i].Received), $"client {i}: its bytes differ from a run without the failure");
            }

            Assert.All(bed.Relay.App.Echo.Sessions, s => Assert.Equal("b", s.Endpoint.Id));
            var metrics = bed.Relay.Metrics();
            Assert.True(SpliceTests.SumMetric(metrics, "relay_splices_total", "result=\"spliced\"") >= Clients, metrics);
            Assert.Equal(0, SpliceTests.SumMetric(metrics, "relay_echo_sessions_lost_total", ""));
            TestContext.Current.TestOutputHelper?.WriteLine(
                $"lossy stretch {lossy.Elapsed.TotalSeconds:F1} s, cut stretch {cut.Elapsed.TotalSeconds:F1} s; after loss: {Describe(afterLoss)}; after cut: {Describe(afterCut)}");
        }
        finally
        {
            await sampler.CancelAsync();
            sampler.Dispose();
            foreach (var socket in sockets)
            {
                socket.Dispose();
            }
        }
    }

    /// <summary>Waits until every session's shadow has acked its whole echo log (bounded).</summary>
    private static Task WaitAllAckedAsync(EchoTestbed bed, string what) => bed.WaitUntilAsync(
        () => bed.Relay.App.Echo.Sessions.All(s => s.Echo.Shadows.Length == 1 && s.Echo.Shadows[0].Snapshot().AckedBytes == s.Echo.Log.Length),
        what,
        TimeSpan.FromSeconds(20));

    private static void AssertNoneLeftReady(EchoTestbed bed, List<string> notReady, string when)
    {
        var left = bed.Relay.Log.Named("ShadowStateChanged").Where(e => e.Message.Contains(": Ready -> ", StringComparison.Ordinal)).Select(e => e.Message).ToList();
        Assert.True(left.Count == 0, $"a shadow left Ready {when}:\n{string.Join("\n", left)}");
        lock (notReady)
        {
            Assert.True(notReady.Count == 0, $"a shadow was sampled out of Ready {when}:\n{string.Join("\n", notReady.Take(20))}");
        }
    }

    private static string Describe(ChannelMetrics m) =>
        $"fec-recovered {m.FecRecoveredShards}, retransmitted {m.RetransmittedShards}, k+m {m.CurrentDataShards}+{m.CurrentParityShards}, paths: "
        + string.Join("; ", m.Paths.Select(p => $"{p.Path} alive={p.Alive} sent={p.PacketsSent} recv={p.PacketsReceived} loss={p.LossRate:P1} forecast={p.LossForecast:P1} share={p.Share:P0}"));
}
