using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Threading.Channels;
using Relay.Echo;
using Relay.Transport.Control;
using Relay.Transport.Multipath;
using Relay.Transport.Sockets;

namespace Relay.Agent;

/// <summary>
/// One relay's long-lived echo connection: the control channel that keyed it (heartbeats go there),
/// the multipath channel carrying echo frames, and the shadow sessions that relay opened. When the
/// relay closes the control connection, the channel and every shadow of that relay end.
/// </summary>
internal sealed class EchoConnection : IShadowOwner
{
    private readonly AgentHost _host;
    private readonly ControlChannel _control;
    private readonly HelloRequest _hello;
    private readonly EndPoint? _remote;
    private readonly ILogger _logger;
    private readonly ConcurrentDictionary<long, ShadowSession> _sessions = new();
    private readonly ConcurrentQueue<ShadowSession> _dirty = new();
    private readonly ConcurrentQueue<byte[]> _outbound = new();
    private readonly Channel<bool> _sendSignal = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });
    private MultipathChannel? _channel;

    public EchoConnection(AgentHost host, ControlChannel control, HelloRequest hello, EndPoint? remote, ILogger logger)
    {
        _host = host;
        _control = control;
        _hello = hello;
        _remote = remote;
        _logger = logger;
    }

    private long RelayId => _hello.RelayId;

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        var options = _host.Options;
        var sockets = new List<UdpDatagramSocket>(_hello.RelayPaths.Count);
        try
        {
            for (var i = 0; i < _hello.RelayPaths.Count; i++)
            {
                sockets.Add(options.PathSocketFactory is { } factory
                    ? factory(i, _hello.RelayPaths[i])
                    : UdpDatagramSocket.Bind(new IPEndPoint(options.Paths[i % options.Paths.Count], 0), _hello.RelayPaths[i]));
            }
        }
        catch (SocketException ex)
        {
            foreach (var socket in sockets)
            {
                socket.Dispose();
            }

            var refusal = $"the agent cannot bind a UDP path: {ex.SocketErrorCode}";
            AgentLog.HelloRefused(_logger, _remote, refusal);
            await _control.SendAsync(EchoWire.Refused(refusal), cancellationToken).ConfigureAwait(false);
            return;
        }

        await _control.SendAsync(EchoWire.HelloOk(new HelloAnswer(options.Id, [.. sockets.Select(s => s.LocalEndPoint)])), cancellationToken).ConfigureAwait(false);
        _channel = MultipathChannel.Start(new MultipathChannelOptions { ChannelName = $"agent-{RelayId}" }, _control.Keys, isClient: false, sockets, _logger);
        _host.EchoChannelStarted(RelayId, _channel);
        AgentLog.EchoConnected(_logger, RelayId, _remote, sockets.Count);

        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var receive = Task.Run(() => ReceiveLoopAsync(_channel, stop.Token), CancellationToken.None);
        var send = Task.Run(() => SendLoopAsync(_channel, stop.Token), CancellationToken.None);
        var heartbeat = Task.Run(() => HeartbeatLoopAsync(stop.Token), CancellationToken.None);
        var reason = "the relay closed the connection";
        try
        {
            while (true)
            {
                var message = await _control.ReceiveAsync(stop.Token).ConfigureAwait(false);
                if (message is null)
                {
                    break;
                }

                // Nothing is expected from the relay here after the hello; a stray message is dropped.
                _host.CountDropped();
                AgentLog.FrameDropped(_logger, RelayId, message.Length > 0 ? message[0] : (byte)0, message.Length, "unexpected control message on the echo connection");
            }
        }
        catch (OperationCanceledException)
        {
            reason = "the agent is stopping";
        }
        catch (Exception ex) when (ex is IOException or SocketException or AuthenticationException or InvalidDataException or ObjectDisposedException)
        {
            reason = $"control connection failed: {ex.Message}";
        }
        finally
        {
            await stop.CancelAsync().ConfigureAwait(false);
            _host.EchoChannelEnded(RelayId, _channel);
            await _channel.DisposeAsync().ConfigureAwait(false);
            await Task.WhenAll(Observe(receive), Observe(send), Observe(heartbeat)).ConfigureAwait(false);
            var dropped = 0;
            foreach (var (_, session) in _sessions)
            {
                if (!session.IsDetached)
                {
                    dropped++;
                    Forget(session);
                }
            }

            _sessions.Clear();
            AgentLog.EchoDisconnected(_logger, RelayId, reason, dropped);
        }
    }

    public void AckNeeded(ShadowSession session)
    {
        _dirty.Enqueue(session);
        _sendSignal.Writer.TryWrite(true);
    }

    public void Failed(ShadowSession session, string reason)
    {
        AgentLog.ShadowFailed(_logger, session.SessionId, RelayId, reason);
        if (_sessions.TryRemove(new KeyValuePair<long, ShadowSession>(session.SessionId, session)))
        {
            Forget(session);
            _outbound.Enqueue(EchoWire.ShadowFailed(session.SessionId, reason));
            _sendSignal.Writer.TryWrite(true);
        }
    }

    private void Forget(ShadowSession session)
    {
        session.Close();
        _host.Unregister(session);
    }

    private async Task ReceiveLoopAsync(MultipathChannel channel, CancellationToken cancellationToken)
    {
        var buffer = new byte[new MultipathChannelOptions().MaxFrameBytes];
        try
        {
            while (true)
            {
                var length = await channel.ReceiveAsync(buffer, cancellationToken).ConfigureAwait(false);
                if (length == 0)
                {
                    return;
                }

                Dispatch(buffer.AsSpan(0, length));
            }
        }
        catch (OperationCanceledException)
        {
            // The connection is ending.
        }
    }

    private void Dispatch(ReadOnlySpan<byte> frame)
    {
        switch (EchoWire.TypeOf(frame))
        {
            case EchoMessageType.Data:
                if (!EchoWire.TryReadData(frame, out var dataSession, out var offset, out var bytes))
                {
                    Drop(frame, "malformed data frame");
                }
                else if (Find(dataSession, frame) is { } session && !session.TryApply(offset, bytes, out var reason))
                {
                    Failed(session, reason);
                }

                break;
            case EchoMessageType.Digests:
                if (!EchoWire.TryReadDigestsHeader(frame, out var digestSession, out var delivered, out var count))
                {
                    Drop(frame, "malformed digests frame");
                }
                else
                {
                    Find(digestSession, frame)?.AddDigests(frame, count, delivered);
                }

                break;
            case EchoMessageType.Open:
                if (!EchoWire.TryReadOpen(frame, out var open))
                {
                    Drop(frame, "malformed open frame");
                }
                else
                {
                    Open(open);
                }

                break;
            case EchoMessageType.Close:
                if (!EchoWire.TryReadClose(frame, out var closeSession))
                {
                    Drop(frame, "malformed close frame");
                }
                else if (_sessions.TryRemove(closeSession, out var closed))
                {
                    // A session a takeover owns is no longer the echo's to close.
                    if (!closed.IsDetached)
                    {
                        Forget(closed);
                        AgentLog.ShadowClosed(_logger, closeSession, RelayId);
                    }
                }

                break;
            default:
                Drop(frame, "unknown frame type");
                break;
        }
    }

    private ShadowSession? Find(long sessionId, ReadOnlySpan<byte> frame)
    {
        if (_sessions.TryGetValue(sessionId, out var session))
        {
            return session;
        }

        // Frames still in flight for a session that failed or closed are expected; count them apart.
        _host.CountUnknownSession();
        AgentLog.FrameDropped(_logger, RelayId, frame[0], frame.Length, $"no shadow session {sessionId}");
        return null;
    }

    private void Drop(ReadOnlySpan<byte> frame, string reason)
    {
        _host.CountDropped();
        AgentLog.FrameDropped(_logger, RelayId, frame.IsEmpty ? (byte)0 : frame[0], frame.Length, reason);
    }

    private void Open(in OpenFrame open)
    {
        string? refusal = null;
        ShadowSession? session = null;
        if (_sessions.ContainsKey(open.SessionId))
        {
            refusal = $"session {open.SessionId} is already open on this agent";
        }
        else
        {
            session = new ShadowSession(RelayId, open, _host.Options.MaxRetainedOutputBytes, this, _logger);
            if (!_host.TryRegister(session, out refusal))
            {
                session.Close();
                session = null;
            }
        }

        if (session is null)
        {
            AgentLog.ShadowFailed(_logger, open.SessionId, RelayId, refusal!);
            _outbound.Enqueue(EchoWire.ShadowFailed(open.SessionId, refusal!));
            _sendSignal.Writer.TryWrite(true);
            return;
        }

        _sessions[open.SessionId] = session;
        AgentLog.ShadowOpened(_logger, open.SessionId, RelayId, open.Codec.ToString());
        _ = ConnectAsync(session);
    }

    private async Task ConnectAsync(ShadowSession session)
    {
        try
        {
            await session.ConnectAsync(_host.BackendEndPoint, _host.Options.BackendConnectTimeout, _host.Stopping).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is SocketException or TimeoutException)
        {
            Failed(session, $"cannot connect to the backend {_host.BackendText}: {(ex is SocketException s ? s.SocketErrorCode.ToString() : ex.Message)}");
        }
        catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException)
        {
            // The session or the agent ended while connecting.
        }
    }

    private async Task SendLoopAsync(MultipathChannel channel, CancellationToken cancellationToken)
    {
        var ack = new byte[EchoWire.AckBytes];
        var interval = _host.Options.AckInterval;
        try
        {
            while (await _sendSignal.Reader.WaitToReadAsync(cancellationToken).ConfigureAwait(false))
            {
                _sendSignal.Reader.TryRead(out _);
                while (_outbound.TryDequeue(out var frame))
                {
                    await channel.SendAsync(frame, cancellationToken).ConfigureAwait(false);
                }

                for (var n = _dirty.Count; n > 0 && _dirty.TryDequeue(out var session); n--)
                {
                    if (session.TryTakeAck(out var frame))
                    {
                        EchoWire.WriteAck(ack, frame);

                        // SendAsync copies the frame before it completes, so one buffer serves every ack.
                        await channel.SendAsync(ack, cancellationToken).ConfigureAwait(false);
                    }
                }

                channel.Flush();

                // At most one ack per session per interval: a session marked again waits for the next round.
                await Task.Delay(interval, cancellationToken).ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException)
        {
            // The connection is ending.
        }
    }

    private async Task HeartbeatLoopAsync(CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(_host.Options.HeartbeatInterval);
        using var host = new HostMetrics();
        try
        {
            do
            {
                var (used, total) = HostMetrics.Memory();
                var beat = new HeartbeatFrame(_host.Options.CpuPercentSource?.Invoke() ?? host.CpuPercent(), used, _host.SplicedSessions, _host.ShadowSessions, total);
                await _control.SendAsync(EchoWire.Heartbeat(beat), cancellationToken).ConfigureAwait(false);
            }
            while (await timer.WaitForNextTickAsync(cancellationToken).ConfigureAwait(false));
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or SocketException or ObjectDisposedException)
        {
            // The control connection is ending; its receive loop reports why.
        }
    }

    private async Task Observe(Task task)
    {
        try
        {
            await task.ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            // A loop must not fail unnoticed; the connection is over either way.
            AgentLog.EchoLoopFailed(_logger, RelayId, ex);
        }
    }
}
