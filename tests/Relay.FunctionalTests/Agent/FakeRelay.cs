using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Relay.Echo;
using Relay.Transport.Control;
using Relay.Transport.Multipath;
using Relay.Transport.Sockets;

namespace Relay.FunctionalTests.Agent;

/// <summary>
/// Plays the relay's side of the echo protocol against an agent: the control handshake, Hello/HelloOk,
/// the multipath channel (client side), echo frames out, acks and ShadowFailed frames in.
/// </summary>
internal sealed class FakeRelay : IAsyncDisposable
{
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    private readonly SemaphoreSlim _sendGate = new(1, 1);
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _receive;
    private readonly Task _control;
    private int _heartbeats;

    private FakeRelay(long relayId, ControlChannel control, MultipathChannel channel, HelloAnswer answer)
    {
        RelayId = relayId;
        Control = control;
        Channel = channel;
        Answer = answer;
        _receive = Task.Run(ReceiveLoopAsync);
        _control = Task.Run(ControlLoopAsync);
    }

    public long RelayId { get; }

    public ControlChannel Control { get; }

    public MultipathChannel Channel { get; }

    public HelloAnswer Answer { get; }

    public ConcurrentQueue<AckFrame> Acks { get; } = new();

    public ConcurrentQueue<(long Session, string Reason)> Failures { get; } = new();

    public int Heartbeats => Volatile.Read(ref _heartbeats);

    public static async Task<FakeRelay> ConnectAsync(IPEndPoint agent, byte[] psk, long relayId)
    {
        using var timeout = new CancellationTokenSource(Timeout);
        var control = await ControlChannel.ConnectAsync(agent, psk, timeout.Token);
        var socket = UdpDatagramSocket.Bind(new IPEndPoint(IPAddress.Loopback, 0), new IPEndPoint(IPAddress.Loopback, 9));
        await control.SendAsync(EchoWire.Hello(new HelloRequest(EchoWire.Version, relayId, ConnectionPurpose.Echo, [socket.LocalEndPoint])), timeout.Token);
        var reply = await control.ReceiveAsync(timeout.Token);
        Assert.NotNull(reply);
        Assert.True(EchoWire.TryReadHelloOk(reply, out var answer), $"expected HelloOk, got type {reply[0]}");
        socket.SetRemote(answer.AgentPaths[0]);
        var channel = MultipathChannel.Start(new MultipathChannelOptions { ChannelName = "fake-relay" }, control.Keys, isClient: true, [socket]);
        return new FakeRelay(relayId, control, channel, answer);
    }

    public async Task SendAsync(byte[] frame)
    {
        await _sendGate.WaitAsync(Timeout);
        try
        {
            await Channel.SendAsync(frame);
            Channel.Flush();
        }
        finally
        {
            _sendGate.Release();
        }
    }

    public Task OpenAsync(long session, MessageCodec codec = MessageCodec.Lines, int maxMessageBytes = 64 * 1024)
    {
        var frame = new byte[EchoWire.OpenBytes];
        EchoWire.WriteOpen(frame, new OpenFrame(session, codec, maxMessageBytes));
        return SendAsync(frame);
    }

    public Task DataAsync(long session, long offset, ReadOnlySpan<byte> bytes)
    {
        var frame = new byte[EchoWire.DataHeaderBytes + bytes.Length];
        EchoWire.WriteDataHeader(frame, session, offset);
        bytes.CopyTo(frame.AsSpan(EchoWire.DataHeaderBytes));
        return SendAsync(frame);
    }

    public Task DigestsAsync(long session, long delivered, ReadOnlySpan<DigestEntry> entries)
    {
        var frame = new byte[EchoWire.DigestsHeaderBytes + (entries.Length * EchoWire.DigestEntryBytes)];
        EchoWire.WriteDigests(frame, session, delivered, entries);
        return SendAsync(frame);
    }

    public async Task<AckFrame> WaitForAckAsync(long session, Func<AckFrame, bool> predicate)
    {
        var deadline = DateTime.UtcNow + Timeout;
        AckFrame? last = null;
        while (DateTime.UtcNow < deadline)
        {
            foreach (var ack in Acks)
            {
                if (ack.SessionId == session)
                {
                    last = ack;
                    if (predicate(ack))
                    {
                        return ack;
                    }
                }
            }

            await Task.Delay(10);
        }

        throw new TimeoutException($"no matching ack for session {session}; last was {last?.ToString() ?? "none"}");
    }

    public async Task<string> WaitForFailureAsync(long session)
    {
        var deadline = DateTime.UtcNow + Timeout;
        while (DateTime.UtcNow < deadline)
        {
            foreach (var failure in Failures)
            {
                if (failure.Session == session)
                {
                    return failure.Reason;
                }
            }

            await Task.Delay(10);
        }

        throw new TimeoutException($"no ShadowFailed for session {session}");
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await Channel.DisposeAsync();
        await Control.DisposeAsync();
        await Task.WhenAll(_receive, _control).WaitAsync(Timeout);
        _stop.Dispose();
        _sendGate.Dispose();
    }

    private async Task ReceiveLoopAsync()
    {
        var buffer = new byte[new MultipathChannelOptions().MaxFrameBytes];
        try
        {
            while (true)
            {
                var length = await Channel.ReceiveAsync(buffer, _stop.Token);
                if (length == 0)
                {
                    return;
                }

                var frame = buffer.AsSpan(0, length);
                if (EchoWire.TryReadAck(frame, out var ack))
                {
                    Acks.Enqueue(ack);
                }
                else if (EchoWire.TryReadShadowFailed(frame, out var session, out var reason))
                {
                    Failures.Enqueue((session, reason));
                }
            }
        }
        catch (OperationCanceledException)
        {
            // The test is over.
        }
    }

    private async Task ControlLoopAsync()
    {
        try
        {
            while (await Control.ReceiveAsync(_stop.Token) is { } message)
            {
                if (EchoWire.TryReadHeartbeat(message, out _))
                {
                    Interlocked.Increment(ref _heartbeats);
                }
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or ObjectDisposedException or SocketException)
        {
            // The test is over.
        }
    }
}
