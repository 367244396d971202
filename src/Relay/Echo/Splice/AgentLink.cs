using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Relay.Clusters;
using Relay.Transport.Control;
using Relay.Transport.Multipath;
using Relay.Transport.Sockets;

namespace Relay.Echo.Splice;

/// <summary>
/// The relay's side of one agent: the authenticated control connection, the multipath echo channel
/// it keys, the shipper that sends every shadow's input and digests, the receiver of acks and
/// heartbeats, and pre-opened connections for TAKEOVER. Reconnects with back-off.
/// </summary>
internal sealed class AgentLink : IAsyncDisposable
{
    private static readonly TimeSpan s_connectTimeout = TimeSpan.FromSeconds(2);
    private readonly EchoManager _manager;
    private readonly ILogger _logger;
    private readonly ConcurrentDictionary<long, ShadowLink> _shadows = new();
    private readonly SemaphoreSlim _shipWake = new(0, 1);
    private readonly CancellationTokenSource _stop = new();
    private readonly SemaphoreSlim _spareGate = new(1, 1);
    private Task? _run;
    private Task<TakeoverConnection>? _spare;
    private volatile MultipathChannel? _channel;
    private volatile bool _connected;

    public AgentLink(EchoManager manager, EndpointState endpoint, IPEndPoint control, ILogger logger)
    {
        _manager = manager;
        Endpoint = endpoint;
        Control = control;
        _logger = logger;
    }

    public EndpointState Endpoint { get; }

    public IPEndPoint Control { get; }

    public bool Connected => _connected;

    public string? AgentId { get; private set; }

    public HeartbeatFrame? LastHeartbeat { get; private set; }

    public DateTimeOffset? LastHeartbeatAt { get; private set; }

    public string? LastError { get; private set; }

    public int ShadowCount => _shadows.Count;

    /// <summary>The channel's smoothed RTT over its best path, in ms; null before the first measurement.</summary>
    public double? RttMs
    {
        get
        {
            var channel = _channel;
            if (channel is null || channel.IsClosed)
            {
                return null;
            }

            double? best = null;
            foreach (var path in channel.GetMetrics().Paths)
            {
                if (path.Alive && path.SrttMs > 0 && (best is null || path.SrttMs < best))
                {
                    best = path.SrttMs;
                }
            }

            return best;
        }
    }

    public MultipathChannel? Channel => _channel;

    public void Start() => _run = Task.Run(() => RunAsync(_stop.Token));

    public bool Register(ShadowLink shadow)
    {
        if (!_shadows.TryAdd(shadow.Session.Id, shadow))
        {
            return false;
        }

        // Wakes a ship loop that sleeps for want of shadows.
        if (_shipWake.CurrentCount == 0)
        {
            try
            {
                _shipWake.Release();
            }
            catch (SemaphoreFullException)
            {
                // Another registration woke it first.
            }
            catch (ObjectDisposedException)
            {
                // The link is gone; its shadows are being lost with it.
            }
        }

        return true;
    }

    private async Task RunAsync(CancellationToken cancellationToken)
    {
        var backoff = TimeSpan.FromMilliseconds(250);
        while (!cancellationToken.IsCancellationRequested)
        {
            string reason;
            try
            {
                reason = await ConnectAndServeAsync(cancellationToken).ConfigureAwait(false);
                backoff = TimeSpan.FromMilliseconds(250);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                break;
            }
            catch (Exception ex) when (ex is SocketException or IOException or System.Security.Authentication.AuthenticationException or InvalidDataException or TimeoutException or OperationCanceledException or ObjectDisposedException)
            {
                reason = ex.Message;
                LastError = reason;
                SpliceLog.AgentUnreachable(_logger, Endpoint.Id, Control, reason, backoff.TotalMilliseconds);
            }

            LoseAllShadows(reason);
            try
            {
                await Task.Delay(backoff, cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                break;
            }

            backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, TimeSpan.FromSeconds(5).Ticks));
        }
    }

    private async Task<string> ConnectAndServeAsync(CancellationToken cancellationToken)
    {
        var psk = _manager.Psk;
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(s_connectTimeout);
        var control = await ControlChannel.ConnectAsync(Control, psk, timeout.Token).ConfigureAwait(false);
        await using (control.ConfigureAwait(false))
        {
            var sockets = new List<UdpDatagramSocket>();
            try
            {
                var addresses = _manager.PathAddresses;
                var factory = _manager.PathSocketFactory;
                for (var i = 0; i < addresses.Length; i++)
                {
                    sockets.Add(factory is null ? UdpDatagramSocket.Bind(new IPEndPoint(addresses[i], 0), Control) : factory(i, Control));
                }

                await control.SendAsync(EchoWire.Hello(new HelloRequest(EchoWire.Version, _manager.RelayId, ConnectionPurpose.Echo, [.. sockets.Select(s => s.LocalEndPoint)])), timeout.Token).ConfigureAwait(false);
                var answer = await control.ReceiveAsync(timeout.Token).ConfigureAwait(false);
                if (answer is not null && EchoWire.TryReadRefused(answer, out var refused))
                {
                    throw new IOException($"the agent refused the echo connection: {refused}");
                }

                if (answer is null || !EchoWire.TryReadHelloOk(answer, out var hello) || hello.AgentPaths.Count != sockets.Count)
                {
                    throw new InvalidDataException("the agent's answer to hello is malformed");
                }

                for (var i = 0; i < sockets.Count; i++)
                {
                    sockets[i].SetRemote(hello.AgentPaths[i]);
                }

                AgentId = hello.AgentId;
                // UDP GSO where the kernel has it: the transport benchmark sends about 1.7x the frames per second with it.
                var options = new MultipathChannelOptions { ChannelName = $"agent-{Endpoint.Id}", MinParityShards = _manager.RedundancyFloor, PathLossParity = _manager.PathLossParity, UseGso = true };
                var wrapper = _manager.PathSocketWrapper;
                IReadOnlyList<IDatagramSocket> channelSockets = wrapper is null ? sockets : [.. sockets.Select((s, i) => wrapper(i, s))];
                var channel = MultipathChannel.Start(options, control.Keys, isClient: true, channelSockets, _logger);
                sockets.Clear();
                await using (channel.ConfigureAwait(false))
                {
                    _channel = channel;
                    _connected = true;
                    LastError = null;
                    _manager.Metrics.AgentConnected.WithLabels(Endpoint.Id).Set(1);
                    SpliceLog.AgentConnected(_logger, Endpoint.Id, Control, hello.AgentId, channel.PathCount);
                    _ = RefillSpareAsync();
                    _manager.OnAgentConnected(this);
                    using var serving = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                    var receive = ReceiveLoopAsync(channel, serving.Token);
                    var ship = ShipLoopAsync(channel, serving.Token);
                    var heartbeats = ControlLoopAsync(control, serving.Token);
                    var first = await Task.WhenAny(receive, ship, heartbeats).ConfigureAwait(false);
                    await serving.CancelAsync().ConfigureAwait(false);
                    _connected = false;
                    _channel = null;
                    _manager.Metrics.AgentConnected.WithLabels(Endpoint.Id).Set(0);
                    var reason = await first.ConfigureAwait(false);
                    await Task.WhenAll(Quietly(receive), Quietly(ship), Quietly(heartbeats)).ConfigureAwait(false);
                    SpliceLog.AgentDisconnected(_logger, Endpoint.Id, reason, _shadows.Count);
                    LastError = reason;
                    return reason;
                }
            }
            finally
            {
                foreach (var socket in sockets)
                {
                    socket.Dispose();
                }
            }
        }
    }

    private static async Task Quietly(Task<string> task)
    {
        try
        {
            await task.ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or ObjectDisposedException or SocketException or InvalidOperationException)
        {
            // The link is going down; the first task's reason is the one reported.
        }
    }

    private async Task<string> ControlLoopAsync(ControlChannel control, CancellationToken cancellationToken)
    {
        try
        {
            while (true)
            {
                var message = await control.ReceiveAsync(cancellationToken).ConfigureAwait(false);
                if (message is null)
                {
                    return "the agent closed the control connection";
                }

                if (EchoWire.TryReadHeartbeat(message, out var heartbeat))
                {
                    LastHeartbeat = heartbeat;
                    LastHeartbeatAt = _manager.Time.GetUtcNow();
                    _manager.Metrics.AgentCpu.WithLabels(Endpoint.Id).Set(heartbeat.CpuPercent);
                }
                else
                {
                    _manager.Metrics.EchoFramesDropped.WithLabels(Endpoint.Id).Inc();
                    SpliceLog.FrameDropped(_logger, Endpoint.Id, message.Length > 0 ? message[0] : -1, message.Length);
                }
            }
        }
        catch (OperationCanceledException)
        {
            return "stopped";
        }
        catch (Exception ex) when (ex is IOException or System.Security.Authentication.AuthenticationException or InvalidDataException or ObjectDisposedException)
        {
            return $"control connection failed: {ex.Message}";
        }
    }

    private async Task<string> ReceiveLoopAsync(MultipathChannel channel, CancellationToken cancellationToken)
    {
        var buffer = new byte[new MultipathChannelOptions().MaxFrameBytes];
        try
        {
            while (true)
            {
                var length = await channel.ReceiveAsync(buffer, cancellationToken).ConfigureAwait(false);
                if (length <= 0)
                {
                    return "the echo channel closed";
                }

                var frame = buffer.AsSpan(0, length);
                if (EchoWire.TryReadAck(frame, out var ack))
                {
                    if (_shadows.TryGetValue(ack.SessionId, out var shadow))
                    {
                        _manager.ReportChange(shadow, shadow.OnAck(ack));
                    }
                }
                else if (EchoWire.TryReadShadowFailed(frame, out var sessionId, out var reason))
                {
                    if (_shadows.TryGetValue(sessionId, out var shadow))
                    {
                        SpliceLog.ShadowFailed(_logger, sessionId, Endpoint.Id, reason);
                        _manager.ReportChange(shadow, shadow.MarkLost($"the agent could not keep it: {reason}"));
                        _manager.DropShadow(shadow, reason);
                    }
                }
                else
                {
                    _manager.Metrics.EchoFramesDropped.WithLabels(Endpoint.Id).Inc();
                    SpliceLog.FrameDropped(_logger, Endpoint.Id, length > 0 ? buffer[0] : -1, length);
                }
            }
        }
        catch (OperationCanceledException)
        {
            return "stopped";
        }
        catch (ObjectDisposedException)
        {
            return "the echo channel closed";
        }
    }

    /// <summary>Ships every shadow's new input and the primary's digests, each at its policy's interval.</summary>
    private async Task<string> ShipLoopAsync(MultipathChannel channel, CancellationToken cancellationToken)
    {
        var maxFrame = new MultipathChannelOptions().MaxFrameBytes;
        var frame = new byte[maxFrame];
        var entries = new DigestEntry[(maxFrame - EchoWire.DigestsHeaderBytes) / EchoWire.DigestEntryBytes];
        var time = _manager.Time;
        try
        {
            var wait = MaxShipWait;
            while (!cancellationToken.IsCancellationRequested)
            {
                if (_shadows.IsEmpty)
                {
                    // Nothing to ship: sleep until a shadow registers (or a second passes, to notice a closed channel).
                    await _shipWake.WaitAsync(IdleShipWait, cancellationToken).ConfigureAwait(false);
                }
                else
                {
                    await Task.Delay(wait, time, cancellationToken).ConfigureAwait(false);
                }

                if (channel.IsClosed)
                {
                    return "the echo channel closed";
                }

                // The loop wakes when the next shadow is due, not every millisecond: shadows due
                // within a quarter interval go in the same pass, so their cadences line up and a
                // thousand sessions at 10 ms cost a hundred passes a second.
                var sent = false;
                wait = MaxShipWait;
                var passStart = time.GetTimestamp();
                foreach (var (_, shadow) in _shadows)
                {
                    sent |= await ShipAsync(channel, shadow, frame, entries, cancellationToken).ConfigureAwait(false);

                    // Measured from the pass's start: a shadow shipped later in the pass looks due a little
                    // later than it is, which only errs towards the next pass.
                    var dueIn = shadow.Session.Policy.Interval - time.GetElapsedTime(shadow.LastShipTimestamp, passStart);
                    wait = dueIn < wait ? dueIn : wait;
                }

                wait = wait < MinShipWait ? MinShipWait : wait;

                if (sent)
                {
                    channel.Flush();
                }
            }

            return "stopped";
        }
        catch (OperationCanceledException)
        {
            return "stopped";
        }
        catch (ObjectDisposedException)
        {
            return "the echo channel closed";
        }
    }

    private static readonly TimeSpan MinShipWait = TimeSpan.FromMilliseconds(1);
    private static readonly TimeSpan MaxShipWait = TimeSpan.FromMilliseconds(20);
    private static readonly TimeSpan IdleShipWait = TimeSpan.FromSeconds(1);

    /// <summary>How early a shadow may ship so that it joins a pass made for another: a quarter of its interval, at most 2 ms.</summary>
    private static TimeSpan ShipSlack(TimeSpan interval) => interval / 4 < TimeSpan.FromMilliseconds(2) ? interval / 4 : TimeSpan.FromMilliseconds(2);

    private async ValueTask<bool> ShipAsync(MultipathChannel channel, ShadowLink shadow, byte[] frame, DigestEntry[] entries, CancellationToken cancellationToken)
    {
        var session = shadow.Session;
        if (shadow.DetachedReason is not null)
        {
            _shadows.TryRemove(new KeyValuePair<long, ShadowLink>(session.Id, shadow));
            if (shadow.Opened)
            {
                var closeLength = EchoWire.WriteClose(frame, session.Id);
                await channel.SendAsync(frame.AsMemory(0, closeLength), cancellationToken).ConfigureAwait(false);
                return true;
            }

            return false;
        }

        var heartbeat = LastHeartbeatAt;
        var agentAlive = heartbeat is { } at && _manager.Time.GetUtcNow() - at < session.Policy.AckTimeout;
        _manager.ReportChange(shadow, shadow.OnTick(agentAlive));
        var now = _manager.Time.GetTimestamp();
        if (shadow.Opened && _manager.Time.GetElapsedTime(shadow.LastShipTimestamp, now) < session.Policy.Interval - ShipSlack(session.Policy.Interval))
        {
            return false;
        }

        shadow.LastShipTimestamp = now;
        var sent = false;
        if (!shadow.Opened)
        {
            var openLength = EchoWire.WriteOpen(frame, new OpenFrame(session.Id, session.Codec, session.MaxMessageBytes));
            await channel.SendAsync(frame.AsMemory(0, openLength), cancellationToken).ConfigureAwait(false);
            shadow.Opened = true;
            sent = true;
        }

        var log = session.Log;
        var target = log.Length;
        var budget = 1024 * 1024;
        long shipped = 0;
        while (shadow.SentOffset < target && budget > 0)
        {
            var room = (int)Math.Min(frame.Length - EchoWire.DataHeaderBytes, target - shadow.SentOffset);
            if (!log.TryRead(shadow.SentOffset, frame.AsSpan(EchoWire.DataHeaderBytes, room), out var copied) || copied == 0)
            {
                _manager.ReportChange(shadow, shadow.MarkLost("the echo log trimmed input this shadow had not been sent"));
                break;
            }

            EchoWire.WriteDataHeader(frame, session.Id, shadow.SentOffset);
            await channel.SendAsync(frame.AsMemory(0, EchoWire.DataHeaderBytes + copied), cancellationToken).ConfigureAwait(false);
            shadow.SentOffset += copied;
            shipped += copied;
            budget -= copied;
            sent = true;
        }

        if (shipped > 0)
        {
            _manager.Metrics.EchoBytes.WithLabels(Endpoint.Id).Inc(shipped);
        }

        var digests = session.Digests;
        var delivered = session.Delivered;
        while (shadow.SentDigestIndex < digests.Count || delivered != shadow.SentDelivered)
        {
            var first = Math.Max(digests.FirstRetained, session.Policy.UncomparedResponses);
            if (shadow.SentDigestIndex < first)
            {
                shadow.SentDigestIndex = Math.Min(first, digests.Count);
            }

            var count = digests.CopyTo(shadow.SentDigestIndex, entries);
            var length = EchoWire.WriteDigests(frame, session.Id, delivered, entries.AsSpan(0, count));
            await channel.SendAsync(frame.AsMemory(0, length), cancellationToken).ConfigureAwait(false);
            shadow.SentDigestIndex += count;
            shadow.SentDelivered = delivered;
            sent = true;
            if (count == 0)
            {
                break;
            }
        }

        return sent;
    }

    private void LoseAllShadows(string reason)
    {
        foreach (var (_, shadow) in _shadows)
        {
            _manager.ReportChange(shadow, shadow.MarkLost($"the agent's echo connection went down: {reason}"));
            _manager.DropShadow(shadow, reason);
        }

        _shadows.Clear();
    }

    /// <summary>
    /// A pre-opened, authenticated connection for one TAKEOVER; opens a fresh one when no spare is ready.
    /// The caller calls <see cref="RefillSpareLater"/> when its takeover round is over.
    /// </summary>
    public async Task<TakeoverConnection> TakeTakeoverConnectionAsync(CancellationToken cancellationToken)
    {
        Task<TakeoverConnection>? spare;
        await _spareGate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            spare = _spare is { IsCompletedSuccessfully: true } ? _spare : null;
            if (spare is not null)
            {
                _spare = null;
            }
        }
        finally
        {
            _spareGate.Release();
        }

        if (spare is not null)
        {
            var connection = await spare.ConfigureAwait(false);
            if (connection.Socket.Connected && !connection.Socket.Poll(0, SelectMode.SelectRead))
            {
                return connection;
            }

            // The agent closed the spare (it restarted, or the connection idled out): open a fresh one.
            await connection.DisposeAsync().ConfigureAwait(false);
        }

        return await OpenTakeoverConnectionAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Opens the next spare once a takeover round is over. Not while it runs: on a small host the
    /// connect and handshake would take CPU from the splice (and the agent) while the session is paused.
    /// </summary>
    public void RefillSpareLater() => ThreadPool.UnsafeQueueUserWorkItem(static link => _ = link.RefillSpareAsync(), this, preferLocal: false);

    private async Task RefillSpareAsync()
    {
        await _spareGate.WaitAsync().ConfigureAwait(false);
        try
        {
            if (_spare is not null && !_spare.IsFaulted && !_spare.IsCanceled)
            {
                return;
            }

            _spare = OpenTakeoverConnectionAsync(_stop.Token);
        }
        catch (ObjectDisposedException)
        {
            // Stopping.
        }
        finally
        {
            _spareGate.Release();
        }
    }

    private async Task<TakeoverConnection> OpenTakeoverConnectionAsync(CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(s_connectTimeout);
        var socket = new Socket(Control.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await socket.ConnectAsync(Control, timeout.Token).ConfigureAwait(false);
            var control = await ControlChannel.HandshakeAsync(new NetworkStream(socket, ownsSocket: false), _manager.Psk, isClient: true, timeout.Token).ConfigureAwait(false);
            await control.SendAsync(EchoWire.Hello(new HelloRequest(EchoWire.Version, _manager.RelayId, ConnectionPurpose.Takeover, [(IPEndPoint)socket.LocalEndPoint!])), timeout.Token).ConfigureAwait(false);
            return new TakeoverConnection(socket, control);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        if (_run is not null)
        {
            await _run.ConfigureAwait(false);
        }

        if (_spare is { IsCompletedSuccessfully: true } spare)
        {
            await (await spare.ConfigureAwait(false)).DisposeAsync().ConfigureAwait(false);
        }

        _manager.Metrics.AgentConnected.RemoveLabelled(Endpoint.Id);
        _stop.Dispose();
        _shipWake.Dispose();
    }
}

/// <summary>An authenticated connection to an agent, ready for one TAKEOVER; the socket carries the session's bytes after OK.</summary>
internal sealed class TakeoverConnection(Socket socket, ControlChannel control) : IAsyncDisposable
{
    public Socket Socket { get; } = socket;

    public ControlChannel Control { get; } = control;

    public async ValueTask DisposeAsync()
    {
        await Control.DisposeAsync().ConfigureAwait(false);
        Socket.Dispose();
    }
}
