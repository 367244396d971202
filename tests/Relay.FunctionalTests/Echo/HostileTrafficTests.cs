using System.Buffers.Binary;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using Relay.Echo;
using Relay.Transport.Control;
using Relay.Transport.Framing;
using Relay.Transport.Multipath;
using Relay.Transport.Sockets;

namespace Relay.FunctionalTests.Echo;

/// <summary>
/// "Forged or replayed echo datagrams and an unauthenticated takeover attempt are refused and
/// counted": on real loopback sockets, sample-server backends, in-process agents and the relay, a
/// foreign UDP socket sends junk to every echo path socket of both peers, the relay's own datagrams
/// are sent again, and strangers knock on the agents' control ports, while scripted clients keep
/// their echoed sessions busy and check every byte.
/// </summary>
[Collection(EchoTests.Name)]
public sealed class HostileTrafficTests
{
    private const string Policy = """{ "codec": "lines", "shadows": 1, "interval": "2ms", "ackTimeout": "3s" }""";
    private const int Clients = 3;
    private const int Warmup = 4;
    private const int Stretch = 40;
    private const int Bursts = Warmup + (4 * Stretch);
    private static readonly TimeSpan s_pause = TimeSpan.FromMilliseconds(5);

    [Fact]
    public async Task ForgedAndReplayedDatagramsAndUnauthenticatedTakeoversAreRefusedAndCounted()
    {
        var ct = TestContext.Current.CancellationToken;
        var total = Stopwatch.StartNew();
        var agentSockets = new List<(int Agent, int Path, UdpDatagramSocket Socket)>();
        var repeaters = new List<RepeatingSocket>();
        var backends = await BackendProcess.StartSampleServersAsync(2);
        await using var bed = await EchoTestbed.StartAsync(backends, Policy, options: new EchoTestbedOptions
        {
            AgentPathSocketFactory = (agent, path, relay) =>
            {
                var socket = UdpDatagramSocket.Bind(new IPEndPoint(IPAddress.Loopback, 0), relay);
                lock (agentSockets)
                {
                    agentSockets.Add((agent, path, socket));
                }

                return socket;
            },
            RelayPathSocketWrapper = (_, socket) =>
            {
                var repeater = new RepeatingSocket(socket);
                lock (repeaters)
                {
                    repeaters.Add(repeater);
                }

                return repeater;
            },
        });
        var echo = bed.Relay.App.Echo;
        var clients = Enumerable.Range(0, Clients).Select(i => new ScriptedClient(9100 + i, Bursts)).ToList();
        var sockets = new List<Socket>();
        var notReady = new List<string>();
        using var sampler = new CancellationTokenSource();
        Task sampling = Task.CompletedTask;
        try
        {
            foreach (var client in clients)
            {
                var socket = await bed.Relay.ConnectAsync("svc");
                sockets.Add(socket);
                await client.RunAsync(socket, 0, Warmup);
            }

            await bed.WaitUntilAsync(() => echo.Sessions.Count() == Clients && bed.AllShadowsReady(1), "every session has a Ready shadow", TimeSpan.FromSeconds(20));
            var shadowsBefore = echo.Sessions.ToDictionary(s => s.Session.Id, s => (Primary: s.Endpoint.Id, Shadow: s.Echo.Shadows.Single().Endpoint.Id));
            var agentShadowsBefore = bed.Agents.Select(a => a.ShadowSessions).ToArray();
            sampling = SampleShadowsAsync(bed, notReady, sampler.Token);
            var next = Warmup;

            // 1. Forged: junk from a foreign socket to every path socket of every channel, relay's and agents', under traffic.
            // Each channel (the relay's link to an agent, and that agent's side) with the addresses of its path sockets.
            var targets = new List<(string Channel, List<IPEndPoint> To, Func<ChannelMetrics> Metrics)>();
            lock (agentSockets)
            {
                foreach (var group in agentSockets.GroupBy(s => s.Agent))
                {
                    var agentHost = bed.Agents[group.Key];
                    var link = echo.Links.Single(l => l.Endpoint.Id == EchoTestbed.EndpointId(group.Key));
                    targets.Add(($"agent {link.Endpoint.Id}", [.. group.Select(s => s.Socket.LocalEndPoint)], () => agentHost.EchoChannelMetrics()[echo.RelayId]));
                    targets.Add(($"relay link {link.Endpoint.Id}", [.. group.Select(s => s.Socket.RemoteEndPoint)], () => link.Channel!.GetMetrics()));
                }
            }

            Assert.Equal(2 * 2, targets.Count);
            Assert.All(targets, t => Assert.Equal(2, t.To.Count));
            var before = targets.Select(t => t.Metrics()).ToList();
            var run = RunAllAsync(clients, sockets, next, next + Stretch);
            var forged = Forgeries();
            using (var foreign = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp))
            {
                foreign.Bind(new IPEndPoint(IPAddress.Loopback, 0));
                foreach (var (datagram, _) in forged)
                {
                    foreach (var to in targets.SelectMany(t => t.To))
                    {
                        await foreign.SendToAsync(datagram, SocketFlags.None, to, ct);
                    }

                    await Task.Delay(2, ct);
                }
            }

            await run;
            next += Stretch;
            for (var i = 0; i < targets.Count; i++)
            {
                var target = targets[i];
                var start = before[i];
                var sent = forged.Count * target.To.Count;
                await bed.WaitUntilAsync(() => target.Metrics().TotalDrops - start.TotalDrops >= sent, $"{target.Channel} counts the {sent} forged datagrams", TimeSpan.FromSeconds(5));
                var after = target.Metrics();
                Assert.True(after.TotalDrops - start.TotalDrops == sent, $"{target.Channel}: {after.TotalDrops - start.TotalDrops} drops for {sent} forged datagrams ({Describe(start, after)})");
                foreach (var reason in new[] { DropReason.Truncated, DropReason.WrongVersion, DropReason.AuthFailed })
                {
                    var least = forged.Count(f => f.Reason == reason) * target.To.Count;
                    var most = least + (forged.Count(f => f.Reason is null) * target.To.Count);
                    var got = Delta(start, after, reason);
                    Assert.True(got >= least && got <= most, $"{target.Channel}: {got} {reason} drops, expected {least} (up to {most} with the random ones) ({Describe(start, after)})");
                }
            }

            // Every path of every channel still receives (probes every 50 ms): no forged datagram stopped a receive loop.
            var afterForgery = targets.Select(t => t.Metrics()).ToList();
            for (var i = 0; i < targets.Count; i++)
            {
                var target = targets[i];
                var then = afterForgery[i];
                await bed.WaitUntilAsync(
                    () => target.Metrics().Paths.Zip(then.Paths).All(p => p.First.PacketsReceived > p.Second.PacketsReceived + 3),
                    $"{target.Channel}: every path still receives after the forgeries",
                    TimeSpan.FromSeconds(5));
            }

            // 2. Replayed: the relay's genuine data datagrams, sent again at once and 50 ms later, under traffic.
            var agentsBefore = bed.Agents.Select(a => a.EchoChannelMetrics()[echo.RelayId]).ToList();
            foreach (var repeater in Snapshot(repeaters))
            {
                repeater.Start(every: 3, limit: 60, later: TimeSpan.FromMilliseconds(50));
            }

            await RunAllAsync(clients, sockets, next, next + Stretch);
            next += Stretch;
            var replaying = Snapshot(repeaters);
            await bed.WaitUntilAsync(() => replaying.All(r => r.Done), "every repeater has sent its copies", TimeSpan.FromSeconds(10));
            var copies = replaying.Sum(r => r.CopiesSent);
            Assert.True(copies >= 40, $"only {copies} genuine datagrams were repeated");
            long Replays() => bed.Agents.Select(a => a.EchoChannelMetrics()[echo.RelayId]).Zip(agentsBefore)
                .Sum(p => Delta(p.Second, p.First, DropReason.Replayed) + Delta(p.Second, p.First, DropReason.TooOld));
            await bed.WaitUntilAsync(() => Replays() >= copies, $"the agents count the {copies} repeated datagrams as replays", TimeSpan.FromSeconds(5));
            Assert.Equal(copies, Replays());

            // 3. Unauthenticated takeover: a wrong key, raw garbage, then a correct handshake asking for a session that does not exist.
            var log = bed.AgentLog;
            var failedBefore = log.Named("HandshakeFailed").Count();
            var refusedLogBefore = log.Named("TakeoverRefused").Count();
            var run3 = RunAllAsync(clients, sockets, next, next + Stretch);
            var wrongPsk = RandomNumberGenerator.GetBytes(48);
            foreach (var agent in bed.Agents)
            {
                var failures = agent.HandshakeFailures;
                var refused = agent.TakeoversRefused;
                await Assert.ThrowsAnyAsync<Exception>(() => ControlChannel.ConnectAsync(agent.ControlEndPoint, wrongPsk, ct).WaitAsync(TimeSpan.FromSeconds(5), ct));
                await bed.WaitUntilAsync(() => agent.HandshakeFailures == failures + 1, $"{agent.Options.Id} counts the wrong key", TimeSpan.FromSeconds(5));

                using (var garbage = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
                {
                    await garbage.ConnectAsync(agent.ControlEndPoint, ct);
                    await garbage.SendAsync(RandomNumberGenerator.GetBytes(200), SocketFlags.None, ct);
                    garbage.Shutdown(SocketShutdown.Send);
                    await bed.WaitUntilAsync(() => agent.HandshakeFailures == failures + 2, $"{agent.Options.Id} counts the garbage", TimeSpan.FromSeconds(5));
                    Assert.Equal(0, await ReceiveOrResetAsync(garbage, ct));
                }

                using (var stranger = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true })
                {
                    await stranger.ConnectAsync(agent.ControlEndPoint, ct);
                    await using var control = await ControlChannel.HandshakeAsync(new NetworkStream(stranger, ownsSocket: false), echo.Psk, isClient: true, ct);
                    await control.SendAsync(EchoWire.Hello(new HelloRequest(EchoWire.Version, echo.RelayId, ConnectionPurpose.Takeover, [new IPEndPoint(IPAddress.Loopback, 9)])), ct);
                    await control.SendAsync(EchoWire.Takeover(new TakeoverRequest(echo.RelayId, 987_654_321, 0, 0, true, 0, 0)), ct);
                    var answer = await control.ReceiveAsync(ct).AsTask().WaitAsync(TimeSpan.FromSeconds(5), ct);
                    Assert.NotNull(answer);
                    Assert.True(EchoWire.TryReadRefused(answer, out var reason), $"the agent answered a takeover of an unknown session with message type {answer[0]}");
                    Assert.Contains("987654321", reason, StringComparison.Ordinal);
                }

                Assert.Equal(refused + 1, agent.TakeoversRefused);
                Assert.Equal(failures + 2, agent.HandshakeFailures);
                Assert.Equal(0, agent.TakeoversCompleted);
                Assert.Equal(0, agent.SplicedSessions);
            }

            await run3;
            next += Stretch;
            Assert.Equal(failedBefore + (2 * bed.Agents.Count), log.Named("HandshakeFailed").Count());
            Assert.All(log.Named("HandshakeFailed").Skip(failedBefore), e => Assert.Contains("127.0.0.1", e.Message, StringComparison.Ordinal));
            Assert.Equal(refusedLogBefore + bed.Agents.Count, log.Named("TakeoverRefused").Count());

            // The live sessions never noticed: same primaries and shadows, Ready throughout, every byte as without the attacks.
            await RunAllAsync(clients, sockets, next, Bursts);
            await bed.WaitUntilAsync(() => echo.Sessions.All(s => s.Echo.Shadows.Length == 1 && s.Echo.Shadows[0].Snapshot().AckedBytes == s.Echo.Log.Length), "every shadow acks the whole log", TimeSpan.FromSeconds(10));
            await sampler.CancelAsync();
            await sampling;
            Assert.Equal(shadowsBefore, echo.Sessions.ToDictionary(s => s.Session.Id, s => (Primary: s.Endpoint.Id, Shadow: s.Echo.Shadows.Single().Endpoint.Id)));
            Assert.Equal(agentShadowsBefore, bed.Agents.Select(a => a.ShadowSessions).ToArray());
            lock (notReady)
            {
                Assert.True(notReady.Count == 0, $"a shadow was sampled out of Ready:\n{string.Join("\n", notReady.Take(20))}");
            }

            Assert.DoesNotContain(bed.Relay.Log.Named("ShadowStateChanged"), e => e.Message.Contains(": Ready -> ", StringComparison.Ordinal));
            Assert.Equal(0, SpliceTests.SumMetric(bed.Relay.Metrics(), "relay_splices_total", ""));
            for (var i = 0; i < Clients; i++)
            {
                var reference = await clients[i].ReferenceAsync(backends[0].EndPoint);
                Assert.True(reference.AsSpan().SequenceEqual(clients[i].Received), $"client {i}: its bytes differ from a run without the attacks");
            }

            TestContext.Current.TestOutputHelper?.WriteLine(
                $"{forged.Count} forgeries x {targets.Count} path sockets, {copies} replays, 3 x {bed.Agents.Count} control-port attempts; {total.Elapsed.TotalSeconds:F1} s");
        }
        finally
        {
            await sampler.CancelAsync();
            await sampling;
            foreach (var socket in sockets)
            {
                socket.Dispose();
            }
        }
    }

    /// <summary>The forged datagrams, with the drop reason each must get (null: any reason, as long as it is dropped).</summary>
    private static List<(byte[] Datagram, DropReason? Reason)> Forgeries()
    {
        var random = new Random(4711);
        var forged = new List<(byte[], DropReason?)>();
        for (var i = 0; i < 6; i++)
        {
            var bytes = new byte[random.Next(28, 400)];
            random.NextBytes(bytes);
            forged.Add((bytes, null));
        }

        // Truncated: shorter than header + tag, down to an empty datagram.
        foreach (var length in new[] { 0, 1, 11, 12, 27 })
        {
            var bytes = new byte[length];
            random.NextBytes(bytes);
            if (length > 0)
            {
                bytes[0] = 1;
            }

            forged.Add((bytes, DropReason.Truncated));
        }

        // Wrong version byte on an otherwise plausible datagram.
        foreach (var version in new byte[] { 0, 2, 255 })
        {
            forged.Add((Header(version, 1, 0, 1L << 40, 80, random), DropReason.WrongVersion));
        }

        // Well-formed headers of every type on both paths, packet numbers far ahead, with a tag that cannot verify.
        for (byte type = 1; type <= 6; type++)
        {
            for (byte path = 0; path < 2; path++)
            {
                forged.Add((Header(1, type, path, (1L << 40) + (type * 2) + path, 60, random), DropReason.AuthFailed));
            }
        }

        return forged;
    }

    private static byte[] Header(byte version, byte type, byte path, long packetNumber, int payloadAndTag, Random random)
    {
        var bytes = new byte[12 + payloadAndTag];
        random.NextBytes(bytes);
        bytes[0] = version;
        bytes[1] = type;
        bytes[2] = path;
        bytes[3] = 0;
        BinaryPrimitives.WriteInt64BigEndian(bytes.AsSpan(4), packetNumber);
        return bytes;
    }

    private static long Delta(ChannelMetrics before, ChannelMetrics after, DropReason reason) =>
        after.Drops.GetValueOrDefault(reason) - before.Drops.GetValueOrDefault(reason);

    private static string Describe(ChannelMetrics before, ChannelMetrics after) =>
        string.Join(", ", Enum.GetValues<DropReason>().Select(r => $"{r} +{Delta(before, after, r)}"));

    private static List<T> Snapshot<T>(List<T> list)
    {
        lock (list)
        {
            return [.. list];
        }
    }

    private static Task RunAllAsync(List<ScriptedClient> clients, List<Socket> sockets, int from, int to) =>
        Task.WhenAll(clients.Select((c, i) => c.RunAsync(sockets[i], from, to, s_pause))).WaitAsync(TimeSpan.FromSeconds(60));

    private static async Task<int> ReceiveOrResetAsync(Socket socket, CancellationToken ct)
    {
        try
        {
            return await socket.ReceiveAsync(new byte[64], SocketFlags.None, ct).AsTask().WaitAsync(TimeSpan.FromSeconds(5), ct);
        }
        catch (SocketException ex) when (ex.SocketErrorCode == SocketError.ConnectionReset)
        {
            return 0;
        }
    }

    private static async Task SampleShadowsAsync(EchoTestbed bed, List<string> notReady, CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
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

            try
            {
                await Task.Delay(25, ct);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    /// <summary>
    /// A relay path socket that delegates everything to the real one and, once started, also sends
    /// copies of every <c>every</c>-th genuine data datagram again: at once and <c>later</c> after.
    /// </summary>
    private sealed class RepeatingSocket(IDatagramSocket inner) : IDatagramSocket
    {
        private int _every;
        private int _limit;
        private TimeSpan _later;
        private int _seen;
        private int _picked;
        private int _pending;
        private long _copiesSent;

        public long CopiesSent => Interlocked.Read(ref _copiesSent);

        /// <summary>True when no copy is waiting to be sent later.</summary>
        public bool Done => Volatile.Read(ref _pending) == 0;

        public bool ReceivesCoalesced => inner.ReceivesCoalesced;

        public int LastSegmentBytes => inner.LastSegmentBytes;

        public bool ZeroIsEmptyDatagram => inner.ZeroIsEmptyDatagram;

        public void Start(int every, int limit, TimeSpan later)
        {
            _limit = limit;
            _later = later;
            Volatile.Write(ref _every, every);
        }

        public bool Send(ReadOnlySpan<byte> datagram)
        {
            var sent = inner.Send(datagram);
            var every = Volatile.Read(ref _every);
            if (!sent || every == 0 || datagram.Length < 2 || datagram[1] != 1 || Interlocked.Increment(ref _seen) % every != 0)
            {
                return sent;
            }

            if (Interlocked.Increment(ref _picked) > _limit)
            {
                return sent;
            }

            var copy = datagram.ToArray();
            Interlocked.Increment(ref _pending);
            if (inner.Send(copy))
            {
                Interlocked.Increment(ref _copiesSent);
            }

            _ = Task.Delay(_later).ContinueWith(
                _ =>
                {
                    if (inner.Send(copy))
                    {
                        Interlocked.Increment(ref _copiesSent);
                    }

                    Interlocked.Decrement(ref _pending);
                },
                CancellationToken.None,
                TaskContinuationOptions.ExecuteSynchronously,
                TaskScheduler.Default);
            return sent;
        }

        public bool SendSegments(ReadOnlySpan<byte> datagrams, int segmentBytes, int count)
        {
            var ok = true;
            for (var i = 0; i < count; i++)
            {
                var start = i * segmentBytes;
                ok &= Send(datagrams.Slice(start, Math.Min(segmentBytes, datagrams.Length - start)));
            }

            return ok;
        }

        public ValueTask<int> ReceiveAsync(Memory<byte> buffer, CancellationToken cancellationToken) => inner.ReceiveAsync(buffer, cancellationToken);

        public void Dispose() => inner.Dispose();
    }
}
