using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Logging;
using Relay.Agent;
using Relay.Echo;
using Relay.FunctionalTests.Infrastructure;
using Relay.SampleServer;
using Relay.Transport.Control;

namespace Relay.FunctionalTests.Agent;

/// <summary>The agent in-process against a real sample server, with the test playing the relay.</summary>
public sealed class AgentTests : IAsyncLifetime
{
    private const long RelayId = 42;
    private static readonly byte[] s_psk = Encoding.UTF8.GetBytes("agent-test-psk-0123456789abcdefghijklmnop");

    private readonly TestLog _log = new();
    private SampleServerHost _backend = null!;
    private SampleServerHost _reference = null!;
    private ILoggerFactory _loggerFactory = null!;
    private AgentHost _agent = null!;

    public async ValueTask InitializeAsync()
    {
        _backend = new SampleServerHost(new IPEndPoint(IPAddress.Loopback, 0), "shadow");
        _backend.Start();
        _reference = new SampleServerHost(new IPEndPoint(IPAddress.Loopback, 0), "primary");
        _reference.Start();
        _loggerFactory = LoggerFactory.Create(b => b.AddProvider(_log).SetMinimumLevel(LogLevel.Debug));
        _agent = await AgentHost.StartAsync(Options(_backend.LocalEndPoint.Port), _loggerFactory, TestContext.Current.CancellationToken);
    }

    public async ValueTask DisposeAsync()
    {
        await _agent.DisposeAsync();
        _loggerFactory.Dispose();
        await _backend.DisposeAsync();
        await _reference.DisposeAsync();
    }

    [Fact]
    public async Task EchoedLineSession_AcksAppliedInput_AndMatchesThePrimarysDigests()
    {
        await using var relay = await FakeRelay.ConnectAsync(_agent.ControlEndPoint, s_psk, RelayId);
        Assert.Equal("game-b", relay.Answer.AgentId);
        var input = Encoding.UTF8.GetBytes("HELLO\nMOVE 1 2\nSCORE 10\nECHO hi there\nMOVE -3 4\nSTATE\n");
        var primary = await ReferenceAsync(input, 6);

        await relay.OpenAsync(1);
        await relay.DataAsync(1, 0, input.AsSpan(0, 20));
        await relay.DataAsync(1, 10, input.AsSpan(10)); // overlaps the first frame: the duplicate part is skipped
        await relay.DigestsAsync(1, 6, Digests(primary));

        var ack = await relay.WaitForAckAsync(1, a => a.Applied == input.Length && a.ShadowMessages == 6 && a.Status == DigestStatus.Match);
        Assert.Equal(-1, ack.DivergedIndex);
        Assert.False(ack.BackendClosed);
        await WaitUntilAsync(() => relay.Heartbeats > 0, "a heartbeat");
    }

    [Fact]
    public async Task WrongDigest_IsDiverged_AndTheTakeoverIsRefusedSayingWhere()
    {
        await using var relay = await FakeRelay.ConnectAsync(_agent.ControlEndPoint, s_psk, RelayId);
        var input = Encoding.UTF8.GetBytes("HELLO\nMOVE 1 2\nSTATE\n");
        var digests = Digests(await ReferenceAsync(input, 3));
        digests[1] = digests[1] with { Digest = digests[1].Digest ^ 1 };

        await relay.OpenAsync(2);
        await relay.DataAsync(2, 0, input);
        await relay.DigestsAsync(2, 3, digests);
        var ack = await relay.WaitForAckAsync(2, a => a.Status == DigestStatus.Diverged);
        Assert.Equal(1, ack.DivergedIndex);
        await _log.WaitForAsync("ShadowDiverged", FakeRelay.Timeout);

        var (socket, control) = await OpenTakeoverAsync();
        using (socket)
        await using (control)
        {
            await control.SendAsync(EchoWire.Takeover(new TakeoverRequest(RelayId, 2, input.Length, 3, true, input.Length, 0)), TestContext.Current.CancellationToken);
            var reason = await ExpectRefusedAsync(control);
            Assert.Contains("diverged from the primary at message 1", reason, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task Takeover_AppliesTheTail_SkipsDeliveredReplies_ThenForwardsBothWays()
    {
        await using var relay = await FakeRelay.ConnectAsync(_agent.ControlEndPoint, s_psk, RelayId);
        var echoed = Encoding.UTF8.GetBytes("HELLO\nMOVE 1 2\nSCORE 5\nSTATE\n");
        var tail = Encoding.UTF8.GetBytes("MOVE -3 4\nSTATE\n");
        var later = Encoding.UTF8.GetBytes("SCORE 7\nSTATE\n");
        var reference = await ReferenceAsync([.. echoed, .. tail, .. later], 8);
        var lines = SplitLines(reference);

        await relay.OpenAsync(3);
        await relay.DataAsync(3, 0, echoed);
        await relay.DigestsAsync(3, 2, Digests(Encoding.UTF8.GetBytes(string.Concat(lines.Take(4)))));
        await relay.WaitForAckAsync(3, a => a.Applied == echoed.Length && a.ShadowMessages == 4 && a.Status == DigestStatus.Match);

        const int delivered = 2;
        var (socket, control) = await OpenTakeoverAsync();
        using (socket)
        await using (control)
        {
            var ct = TestContext.Current.CancellationToken;
            await control.SendAsync(EchoWire.Takeover(new TakeoverRequest(RelayId, 3, echoed.Length + tail.Length, delivered, true, echoed.Length, tail.Length)), ct);
            await control.SendAsync(EchoWire.TakeoverTail(tail), ct);
            var answer = await control.ReceiveAsync(ct).AsTask().WaitAsync(FakeRelay.Timeout, ct);
            Assert.NotNull(answer);
            Assert.True(EchoWire.TryReadTakeoverOk(answer, out var cut), Describe(answer));
            Assert.Equal(Encoding.UTF8.GetByteCount(string.Concat(lines.Take(delivered))), cut);

            // From here on the connection is raw: the replies from message 'delivered' on, exactly.
            var expected = Encoding.UTF8.GetBytes(string.Concat(lines.Skip(delivered).Take(4)));
            Assert.Equal(Encoding.UTF8.GetString(expected), Encoding.UTF8.GetString(await ReadExactlyAsync(socket, expected.Length)));

            await socket.SendAsync(later, SocketFlags.None, ct);
            var more = Encoding.UTF8.GetBytes(string.Concat(lines.Skip(6)));
            Assert.Equal(Encoding.UTF8.GetString(more), Encoding.UTF8.GetString(await ReadExactlyAsync(socket, more.Length)));

            // Half-close: the backend sees EOF, ends the session, and the agent passes the EOF back.
            socket.Shutdown(SocketShutdown.Send);
            Assert.Empty(await ReadToEndAsync(socket));
        }

        Assert.Equal(1, _agent.TakeoversCompleted);
        Assert.True(_log.Has("TakeoverDone"));

        // Echo frames for the session after the takeover are ignored, not applied to the spliced backend.
        await relay.DataAsync(3, echoed.Length, tail);
        await WaitUntilAsync(() => _agent.ShadowSessions == 0, "the spliced session to end");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task RawTakeover_CutsAtAByteOffset(bool prepared)
    {
        await using var relay = await FakeRelay.ConnectAsync(_agent.ControlEndPoint, s_psk, RelayId);
        var input = Encoding.UTF8.GetBytes("HELLO\nMOVE 1 2\nSTATE\n");
        var reference = await ReferenceAsync(input, 3);

        await relay.OpenAsync(8, MessageCodec.Raw);
        await relay.DataAsync(8, 0, input);
        await relay.DigestsAsync(8, 10, []);
        await relay.WaitForAckAsync(8, a => a.Applied == input.Length && a.ShadowMessages == reference.Length);

        var (socket, control) = await OpenTakeoverAsync();
        using (socket)
        await using (control)
        {
            var ct = TestContext.Current.CancellationToken;
            if (prepared)
            {
                // A planned splice announces itself before the relay pauses the session.
                await control.SendAsync(EchoWire.TakeoverPrepare(RelayId, 8), ct);
                var ready = await control.ReceiveAsync(ct).AsTask().WaitAsync(FakeRelay.Timeout, ct);
                Assert.NotNull(ready);
                Assert.True(EchoWire.IsTakeoverPrepared(ready), Describe(ready));
            }

            await control.SendAsync(EchoWire.Takeover(new TakeoverRequest(RelayId, 8, input.Length, 13, false, input.Length, 0)), ct);
            var answer = await control.ReceiveAsync(ct).AsTask().WaitAsync(FakeRelay.Timeout, ct);
            Assert.NotNull(answer);
            Assert.True(EchoWire.TryReadTakeoverOk(answer, out var cut), Describe(answer));
            Assert.Equal(13, cut);
            Assert.Equal(Encoding.UTF8.GetString(reference.AsSpan(13)), Encoding.UTF8.GetString(await ReadExactlyAsync(socket, reference.Length - 13)));
        }
    }

    [Fact]
    public async Task TakeoverOfAnUnknownSession_IsRefusedWithASentence()
    {
        var (socket, control) = await OpenTakeoverAsync();
        using (socket)
        await using (control)
        {
            await control.SendAsync(EchoWire.Takeover(new TakeoverRequest(RelayId, 999, 10, 1, true, 0, 10)), TestContext.Current.CancellationToken);
            var reason = await ExpectRefusedAsync(control);
            Assert.Equal("agent game-b holds no shadow of session 999 of relay 42", reason);
        }

        Assert.Equal(1, _agent.TakeoversRefused);
        Assert.True(_log.Has("TakeoverRefused"));
    }

    [Fact]
    public async Task PrepareOfAnUnknownSession_IsRefusedWithASentence()
    {
        var (socket, control) = await OpenTakeoverAsync();
        using (socket)
        await using (control)
        {
            await control.SendAsync(EchoWire.TakeoverPrepare(RelayId, 998), TestContext.Current.CancellationToken);
            var reason = await ExpectRefusedAsync(control);
            Assert.Equal("agent game-b holds no shadow of session 998 of relay 42", reason);
        }

        Assert.Equal(1, _agent.TakeoversRefused);
    }

    [Fact]
    public async Task WrongPsk_IsRejected_LoggedAndCounted()
    {
        var wrong = Encoding.UTF8.GetBytes("not-the-agent-psk-0123456789abcdefghijklmnop");
        await Assert.ThrowsAnyAsync<Exception>(() => ControlChannel.ConnectAsync(_agent.ControlEndPoint, wrong, TestContext.Current.CancellationToken));
        await WaitUntilAsync(() => _agent.HandshakeFailures == 1, "the handshake failure to be counted");
        var entry = await _log.WaitForAsync("HandshakeFailed", FakeRelay.Timeout);
        Assert.Contains("127.0.0.1", entry.Message, StringComparison.Ordinal);

        // The agent still serves relays that hold the key.
        await using var relay = await FakeRelay.ConnectAsync(_agent.ControlEndPoint, s_psk, RelayId);
        Assert.Equal("game-b", relay.Answer.AgentId);
    }

    [Fact]
    public async Task MalformedFrames_AreCounted_NotFatal()
    {
        await using var relay = await FakeRelay.ConnectAsync(_agent.ControlEndPoint, s_psk, RelayId);
        var badOpen = new byte[EchoWire.OpenBytes];
        EchoWire.WriteOpen(badOpen, new OpenFrame(5, MessageCodec.Lines, 1024));
        badOpen[9] = 99;
        await relay.SendAsync([0xEE, 1, 2, 3]);
        await relay.SendAsync([(byte)EchoMessageType.Data, 1]);
        await relay.SendAsync(badOpen);
        await relay.SendAsync([(byte)EchoMessageType.Digests, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 1, 0, 3]);
        await WaitUntilAsync(() => _agent.DroppedFrames >= 4, "four dropped frames");
        Assert.True(_log.Has("FrameDropped"));

        var input = Encoding.UTF8.GetBytes("HELLO\n");
        await relay.OpenAsync(5);
        await relay.DataAsync(5, 0, input);
        await relay.DigestsAsync(5, 1, Digests(await ReferenceAsync(input, 1)));
        await relay.WaitForAckAsync(5, a => a.Applied == input.Length && a.ShadowMessages == 1 && a.Status == DigestStatus.Match);
    }

    [Fact]
    public async Task UnreachableBackend_IsReportedAsShadowFailed()
    {
        var options = Options(Ports.Unused());
        await using var agent = await AgentHost.StartAsync(options, _loggerFactory, TestContext.Current.CancellationToken);
        await using var relay = await FakeRelay.ConnectAsync(agent.ControlEndPoint, s_psk, RelayId);
        await relay.OpenAsync(6);
        var reason = await relay.WaitForFailureAsync(6);
        Assert.StartsWith("cannot connect to the backend 127.0.0.1:", reason, StringComparison.Ordinal);
        await WaitUntilAsync(() => agent.ShadowSessions == 0, "the failed shadow to be forgotten");
    }

    [Fact]
    public async Task RelayDisconnect_DropsItsShadowSessions()
    {
        var relay = await FakeRelay.ConnectAsync(_agent.ControlEndPoint, s_psk, RelayId);
        await relay.OpenAsync(7);
        await relay.DataAsync(7, 0, "HELLO\n"u8);
        await relay.WaitForAckAsync(7, a => a.ShadowMessages == 1);
        Assert.Equal(1, _agent.ShadowSessions);
        await relay.DisposeAsync();
        await WaitUntilAsync(() => _agent.ShadowSessions == 0, "the relay's shadows to be dropped");
        await _log.WaitForAsync("EchoDisconnected", FakeRelay.Timeout);
    }

    [Fact]
    public void CommandLine_ReportsEveryProblem_NamingTheKey()
    {
        Assert.False(AgentCommandLine.TryParse(["--id", "a", "--control", "nope", "--ack-interval", "fast"], null, out _, out _, out var errors));
        Assert.Contains(errors, e => e.StartsWith("--control:", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.StartsWith("--ack-interval:", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.StartsWith("agent.pskFile (--psk-file): required", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.StartsWith("agent.backend (--backend): required", StringComparison.Ordinal));
        Assert.DoesNotContain(errors, e => e.StartsWith("agent.control", StringComparison.Ordinal)); // refused once, as --control

        Assert.False(AgentCommandLine.TryParse(["--id", "a", "--control", "127.0.0.1:0", "--backend", "127.0.0.1:7102"], "short\n", out _, out _, out errors));
        Assert.Equal(["$RELAY_ECHO_PSK: the pre-shared key must be at least 32 bytes (it has 5)"], errors);
    }

    [Fact]
    public void ConfigFile_WithComments_BuildsTheOptions()
    {
        var directory = Directory.CreateTempSubdirectory("agent-test");
        try
        {
            var psk = Path.Combine(directory.FullName, "psk");
            File.WriteAllText(psk, "0123456789abcdef0123456789abcdef-psk\n");
            var config = Path.Combine(directory.FullName, "agent.json");
            File.WriteAllText(config, $$"""
                // the agent beside game-b
                { "agent": { "id": "game-b", "control": "127.0.0.1:7202", "backend": "localhost:7102",
                  "paths": ["127.0.0.1"], "pskFile": "{{psk}}", "heartbeatInterval": "250ms", "ackInterval": "2ms",
                  "takeoverTimeout": "3s", "maxShadowSessions": 5, "maxRetainedOutputBytes": 1048576 } }
                """);
            Assert.True(AgentCommandLine.TryParse(["--config", config, "--log-level", "debug"], null, out var options, out var level, out var errors), string.Join("; ", errors));
            Assert.Equal("game-b", options.Id);
            Assert.Equal(new IPEndPoint(IPAddress.Loopback, 7202), options.Control);
            Assert.Equal("localhost", options.Backend!.Host);
            Assert.Equal(TimeSpan.FromMilliseconds(250), options.HeartbeatInterval);
            Assert.Equal(TimeSpan.FromSeconds(3), options.TakeoverTimeout);
            Assert.Equal(5, options.MaxShadowSessions);
            Assert.Equal(36, options.Psk.Length); // the trailing newline is not part of the key
            Assert.Equal(LogLevel.Debug, level);

            File.WriteAllText(config, """{ "agent": { "id": "x", "colour": "blue" } }""");
            Assert.False(AgentCommandLine.TryParse(["--config", config], null, out _, out _, out errors));
            Assert.Contains(errors, e => e.StartsWith("agent.colour: unknown key", StringComparison.Ordinal));
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }

    private static AgentOptions Options(int backendPort) => new()
    {
        Id = "game-b",
        Control = new IPEndPoint(IPAddress.Loopback, 0),
        Backend = new DnsEndPoint("127.0.0.1", backendPort),
        Paths = [IPAddress.Loopback],
        Psk = s_psk,
        HeartbeatInterval = TimeSpan.FromMilliseconds(100),
    };

    private async Task<(Socket Socket, ControlChannel Control)> OpenTakeoverAsync()
    {
        var ct = TestContext.Current.CancellationToken;
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(_agent.ControlEndPoint, ct);

        // The relay keeps the socket: after TakeoverOk the session's bytes flow raw on it.
        var control = await ControlChannel.HandshakeAsync(new NetworkStream(socket, ownsSocket: false), s_psk, isClient: true, ct);
        await control.SendAsync(EchoWire.Hello(new HelloRequest(EchoWire.Version, RelayId, ConnectionPurpose.Takeover, [new IPEndPoint(IPAddress.Loopback, 9)])), ct);
        return (socket, control);
    }

    private static async Task<string> ExpectRefusedAsync(ControlChannel control)
    {
        var ct = TestContext.Current.CancellationToken;
        var message = await control.ReceiveAsync(ct).AsTask().WaitAsync(FakeRelay.Timeout, ct);
        Assert.NotNull(message);
        Assert.True(EchoWire.TryReadRefused(message, out var reason), Describe(message));
        return reason;
    }

    private static string Describe(byte[] message) =>
        EchoWire.TryReadRefused(message, out var reason) ? $"refused: {reason}" : $"message type {message[0]}, {message.Length} bytes";

    /// <summary>What the primary answers: the same input on a direct connection to another sample server.</summary>
    private async Task<byte[]> ReferenceAsync(byte[] input, int replies)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(_reference.LocalEndPoint, TestContext.Current.CancellationToken);
        await socket.SendAsync(input, SocketFlags.None, TestContext.Current.CancellationToken);
        var output = new List<byte>();
        var buffer = new byte[4096];
        using var timeout = new CancellationTokenSource(FakeRelay.Timeout);
        while (output.Count(b => b == (byte)'\n') < replies)
        {
            var read = await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token);
            Assert.NotEqual(0, read);
            output.AddRange(buffer.AsSpan(0, read));
        }

        return [.. output];
    }

    private static DigestEntry[] Digests(byte[] output)
    {
        var log = new DigestLog(1024);
        var stream = new MessageStream(MessageFramer.Create(new CodecOptions(MessageCodec.Lines, 64 * 1024), StreamDirection.Response), log);
        Assert.True(stream.Feed(output));
        var entries = new DigestEntry[stream.Messages];
        Assert.Equal(entries.Length, log.CopyTo(0, entries));
        return entries;
    }

    private static List<string> SplitLines(byte[] output) =>
        [.. Encoding.UTF8.GetString(output).Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l + "\n")];

    private static async Task<byte[]> ReadExactlyAsync(Socket socket, int length)
    {
        var buffer = new byte[length];
        using var timeout = new CancellationTokenSource(FakeRelay.Timeout);
        var at = 0;
        while (at < length)
        {
            var read = await socket.ReceiveAsync(buffer.AsMemory(at), SocketFlags.None, timeout.Token);
            Assert.True(read > 0, $"the connection ended after {at} of {length} bytes: {Encoding.UTF8.GetString(buffer, 0, at)}");
            at += read;
        }

        return buffer;
    }

    private static async Task<byte[]> ReadToEndAsync(Socket socket)
    {
        var output = new List<byte>();
        var buffer = new byte[4096];
        using var timeout = new CancellationTokenSource(FakeRelay.Timeout);
        while (true)
        {
            var read = await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token);
            if (read == 0)
            {
                return [.. output];
            }

            output.AddRange(buffer.AsSpan(0, read));
        }
    }

    private static async Task WaitUntilAsync(Func<bool> condition, string what)
    {
        var deadline = DateTime.UtcNow + FakeRelay.Timeout;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, $"timed out waiting for {what}");
            await Task.Delay(10, TestContext.Current.CancellationToken);
        }
    }
}
