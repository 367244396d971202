using System.Buffers;
using System.Collections.Concurrent;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Relay.Clusters;
using Relay.Configuration;
using Relay.Diagnostics;
using Relay.Echo.Splice;
using Relay.Transport.Sockets;

namespace Relay.L4;

/// <summary>
/// The L4 data path: admits a client connection, connects it to an endpoint of the route's
/// cluster (retrying the next endpoint when a connect fails), and pumps bytes both ways.
/// </summary>
public sealed class L4Handler
{
    private readonly RelayRuntime _runtime;
    private readonly UpstreamConnector _connector;
    private readonly ILogger _logger;
    private readonly EchoManager? _echo;
    private readonly ConcurrentDictionary<string, RouteCounters> _routeCounters = new(StringComparer.Ordinal);
    private volatile bool _shuttingDown;

    public L4Handler(RelayRuntime runtime, UpstreamConnector connector, ILogger<L4Handler> logger, EchoManager? echo = null)
    {
        _echo = echo;
        _runtime = runtime;
        _connector = connector;
        _logger = logger;
    }

    public void BeginShutdown() => _shuttingDown = true;

    public int ActiveSessions(string route) => _routeCounters.TryGetValue(route, out var counters) ? Volatile.Read(ref counters.Active) : 0;

    public async Task HandleAsync(ConnectionContext client, string routeName)
    {
        var snapshot = _runtime.Snapshot;
        var metrics = _runtime.Metrics;
        if (_shuttingDown || !snapshot.Config.Routes.TryGetValue(routeName, out var route))
        {
            Reject(client, routeName, _shuttingDown ? RelayError.Shutdown : RelayError.RouteRemoved);
            return;
        }

        var counters = _routeCounters.GetOrAdd(routeName, static _ => new RouteCounters());
        var clientIp = (client.RemoteEndPoint as IPEndPoint)?.Address;
        if (!counters.TryAdmit(route, clientIp, out var limitError))
        {
            Reject(client, routeName, limitError);
            return;
        }

        try
        {
            var cluster = snapshot.Clusters[route.Cluster];
            var session = new L4Session(_runtime.NextSessionId(), routeName, client, _runtime.TimeProvider);
            // A plain session's upstream waits on its client's reactor. An echoed one is pumped through
            // pipes on the runtime's engine (its upstream leg can move), so it stays off the reactor,
            // which would otherwise wake for its every answer with nobody waiting.
            var echoPolicy = _echo is { Enabled: true } echoing ? echoing.PolicyFor(route) : null;
            var reactor = echoPolicy is null ? (client as EpollConnection)?.Reactor : null;

            // Not client.ConnectionClosed: it fires on the client's FIN too, and a client that sends
            // its request and half-closes at once must still get its answer. The connect timeout bounds it.
            var (upstream, endpoint, failure) = await ConnectAsync(session, route, cluster, reactor, CancellationToken.None).ConfigureAwait(false);
            if (upstream is null || endpoint is null)
            {
                Reject(client, routeName, failure);
                return;
            }

            session.Upstream = upstream;
            session.Endpoint = endpoint;
            endpoint.SessionStarted();
            _runtime.Sessions[session.Id] = session;
            metrics.SessionsTotal.WithLabels(routeName).Inc();
            metrics.SessionsActive.WithLabels(routeName).Inc();
            RelayLog.SessionStarted(_logger, session.Id, routeName, client.RemoteEndPoint, endpoint.Id, upstream.RemoteEndPoint);
            if (_echo is { Enabled: true } echo && echoPolicy is { } policy)
            {
                // Echoed sessions run their own pumps, which can pause and move the upstream leg.
                try
                {
                    await echo.RunSessionAsync(session, route, policy, upstream, endpoint).ConfigureAwait(false);
                }
                finally
                {
                    EndSession(session, cluster, session.Endpoint ?? endpoint);
                }

                return;
            }

            try
            {
                await using (upstream.ConfigureAwait(false))
                {
                    if (upstream is UpstreamConnection { PipesStarted: false } direct)
                    {
                        // The usual case: pump the upstream socket directly, with no pipes of its own.
                        if (cluster.Config.ProxyProtocol == ProxyProtocolMode.V2)
                        {
                            await WriteProxyHeaderAsync(direct.Socket, client).ConfigureAwait(false);
                        }

                        // Non-blocking from here on: the pumps try each send and receive at once and
                        // wait on the socket only when it is full or empty.
                        direct.Socket.Blocking = false;
                        // A client on the epoll transport has its upstream on the same reactor (see
                        // ConnectAsync), so a session's two directions run on one thread.
                        var readiness = direct.Readiness;
                        var inbound = PumpToSocketAsync(session, client.Transport.Input, direct.Socket, readiness);
                        var outbound = PumpFromSocketAsync(session, direct, client.Transport.Output, readiness);
                        await inbound.ConfigureAwait(false);
                        await outbound.ConfigureAwait(false);
                    }
                    else
                    {
                        if (cluster.Config.ProxyProtocol == ProxyProtocolMode.V2)
                        {
                            await WriteProxyHeaderAsync(upstream.Transport.Output, client).ConfigureAwait(false);
                        }

                        var inbound = PumpAsync(session, client.Transport.Input, upstream.Transport.Output, inbound: true);
                        var outbound = PumpAsync(session, upstream.Transport.Input, client.Transport.Output, inbound: false);
                        await Task.WhenAll(inbound, outbound).ConfigureAwait(false);
                    }
                }
            }
            finally
            {
                EndSession(session, cluster, endpoint);
            }
        }
        finally
        {
            counters.Release(clientIp);
        }
    }

    private async ValueTask<(ConnectionContext? Upstream, EndpointState? Endpoint, RelayError Failure)> ConnectAsync(
        L4Session session, RouteConfig route, ClusterState cluster, EpollReactor? reactor, CancellationToken cancellationToken)
    {
        var attempts = Math.Min(cluster.Config.ConnectAttempts, Math.Max(1, cluster.Endpoints.Length));
        var tried = new EndpointState?[attempts];
        var failure = RelayError.NoHealthyEndpoint;
        for (var attempt = 0; attempt < attempts; attempt++)
        {
            var endpoint = _runtime.Pick(cluster, _runtime.TimeProvider.GetTimestamp(), tried);
            if (endpoint is null)
            {
                break;
            }

            tried[attempt] = endpoint;
            var result = await _connector.ConnectAsync(endpoint.Config.Address, cluster.Config.ConnectTimeout, cancellationToken, reactor).ConfigureAwait(false);
            if (result.Connection is not null)
            {
                return (result.Connection, endpoint, RelayError.None);
            }

            failure = result.Error;
            var address = $"{endpoint.Config.Address.Host}:{endpoint.Config.Address.Port}";
            RelayLog.UpstreamConnectFailed(_logger, endpoint.Id, address, route.Name, result.Error, result.Detail ?? "");
            _runtime.Metrics.ConnectFailures.WithLabels(cluster.Name, endpoint.Id, result.Error.ToString()).Inc();
            _runtime.ReportPassiveFailure(cluster, endpoint, isConnectFailure: true);
        }

        RelayLog.NoEndpointAvailable(_logger, route.Name, cluster.Name, session.ClientAddress, tried.Count(t => t is not null));
        return (null, null, failure);
    }

    private static async ValueTask WriteProxyHeaderAsync(PipeWriter output, ConnectionContext client)
    {
        var span = output.GetSpan(ProxyProtocolV2.MaxHeaderBytes);
        var written = ProxyProtocolV2.Write(span, client.RemoteEndPoint, client.LocalEndPoint);
        output.Advance(written);
        await output.FlushAsync().ConfigureAwait(false);
    }

    private static async ValueTask WriteProxyHeaderAsync(Socket socket, ConnectionContext client)
    {
        var header = ArrayPool<byte>.Shared.Rent(ProxyProtocolV2.MaxHeaderBytes);
        try
        {
            var written = ProxyProtocolV2.Write(header, client.RemoteEndPoint, client.LocalEndPoint);
            await SendAllAsync(socket, header.AsMemory(0, written)).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(header);
        }
    }

    private static async ValueTask SendAllAsync(Socket socket, ReadOnlyMemory<byte> data)
    {
        while (!data.IsEmpty)
        {
            var sent = await socket.SendAsync(data, SocketFlags.None).ConfigureAwait(false);
            data = data[sent..];
        }
    }

    /// <summary>
    /// Sends all of <paramref name="data"/> on a socket in non-blocking mode: straight into its send
    /// buffer while that has room (no operation object, no continuation), and through
    /// <see cref="Socket.SendAsync(ReadOnlyMemory{byte}, SocketFlags, CancellationToken)"/> for the
    /// rest only when the buffer is full, so only a session that meets backpressure keeps the
    /// socket's cached send operation. A socket error is thrown as <see cref="SocketException"/>.
    /// </summary>
    private static ValueTask SendNowAsync(Socket socket, in ReadOnlySequence<byte> data, SocketReadiness? readiness)
    {
        long done = 0;
        foreach (var segment in data)
        {
            var rest = segment;
            while (!rest.IsEmpty)
            {
                var sent = socket.Send(rest.Span, SocketFlags.None, out var error);
                if (error == SocketError.WouldBlock)
                {
                    return readiness is null ? SendRestAsync(socket, data.Slice(done)) : SendWhenWritableAsync(socket, data.Slice(done), readiness);
                }

                if (error != SocketError.Success)
                {
                    throw new SocketException((int)error);
                }

                rest = rest[sent..];
                done += sent;
            }
        }

        return ValueTask.CompletedTask;

        static async ValueTask SendRestAsync(Socket socket, ReadOnlySequence<byte> rest)
        {
            foreach (var segment in rest)
            {
                await SendAllAsync(socket, segment).ConfigureAwait(false);
            }
        }

        static async ValueTask SendWhenWritableAsync(Socket socket, ReadOnlySequence<byte> rest, SocketReadiness readiness)
        {
            foreach (var segment in rest)
            {
                await readiness.SendAllAsync(socket, segment).ConfigureAwait(false);
            }
        }
    }

    /// <summary>
    /// Client to upstream, straight onto the upstream socket (no pipe between): sends what the
    /// client's pipe holds, then releases it, so the client's backpressure is the socket's. When the
    /// client's side ends, sends a FIN upstream and keeps the other direction open, as
    /// <see cref="UpstreamConnection"/>'s send loop does for a completed pipe.
    /// </summary>
    /// <remarks>
    /// The socket is in non-blocking mode (see <see cref="SendNowAsync"/>). Only what is needed after
    /// an await lives in the state machine: one of these stays on the heap for every idle session.
    /// </remarks>
    private async Task PumpToSocketAsync(L4Session session, PipeReader reader, Socket socket, SocketReadiness? readiness)
    {
        var reason = RelayError.None;
        Exception? error = null;
        try
        {
            while (true)
            {
                ReadResult result;
                try
                {
                    result = await reader.ReadAsync().ConfigureAwait(false);
                }
                catch (Exception ex)
                {
                    (reason, error) = (RelayError.ClientReset, ex);
                    break;
                }

                var buffer = result.Buffer;
                var (completed, canceled) = (result.IsCompleted, result.IsCanceled);
                if (!buffer.IsEmpty)
                {
                    session.AddIn(buffer.Length, _runtime.TimeProvider.GetTimestamp());
                    try
                    {
                        var sending = SendNowAsync(socket, buffer, readiness);
                        if (!sending.IsCompletedSuccessfully)
                        {
                            await sending.ConfigureAwait(false);
                        }
                    }
                    catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
                    {
                        (reason, error) = (RelayError.UpstreamReset, ex);
                        reader.AdvanceTo(buffer.End);
                        break;
                    }
                }

                reader.AdvanceTo(buffer.End);
                if (completed)
                {
                    reason = RelayError.ClientClosed;
                    break;
                }

                if (canceled)
                {
                    reason = RelayError.Aborted;
                    break;
                }
            }
        }
        finally
        {
            session.TrySetEndReason(reason, error?.Message);
            reader.Complete();
            try
            {
                socket.Shutdown(SocketShutdown.Send);
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
            {
                // The socket is gone already; the other direction ends on its own.
            }
        }
    }

    /// <summary>
    /// Upstream to client, received straight into the client's output pipe. An idle leg waits with a
    /// zero-byte receive and holds no buffer; the data is then taken with a non-blocking receive
    /// (no second operation). After a receive that filled its buffer it reads again at once, as more
    /// is likely queued, and waits only when the socket has nothing.
    /// </summary>
    private async Task PumpFromSocketAsync(L4Session session, UpstreamConnection upstream, PipeWriter writer, SocketReadiness? readiness)
    {
        var reason = RelayError.None;
        Exception? error = null;
        var socket = upstream.Socket;
        var lastFilled = false;
        try
        {
            while (true)
            {
                int read;
                try
                {
                    if (!lastFilled)
                    {
                        if (readiness is null)
                        {
                            await socket.ReceiveAsync(Memory<byte>.Empty, SocketFlags.None).ConfigureAwait(false);
                        }
                        else
                        {
                            await readiness.Readable.WaitAsync().ConfigureAwait(false);
                            ObjectDisposedException.ThrowIf(readiness.Readable.IsClosed, socket);
                        }
                    }

                    var memory = writer.GetMemory(1);
                    read = socket.Receive(memory.Span, SocketFlags.None, out var socketError);
                    if (socketError == SocketError.WouldBlock)
                    {
                        lastFilled = false;
                        continue;
                    }

                    if (socketError != SocketError.Success)
                    {
                        throw new SocketException((int)socketError);
                    }

                    // With a reactor, a short read means the socket is empty unless its end was
                    // seen: then read on to the 0 (or the error), which no new edge would announce.
                    lastFilled = read == memory.Length || readiness is { Readable.HangUp: true };
                }
                catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
                {
                    (reason, error) = (RelayError.UpstreamReset, ex);
                    break;
                }

                if (read == 0)
                {
                    reason = RelayError.UpstreamClosed;
                    break;
                }

                writer.Advance(read);
                session.AddOut(read, _runtime.TimeProvider.GetTimestamp());
                FlushResult flush;
                try
                {
                    var pending = writer.FlushAsync();
                    flush = pending.IsCompletedSuccessfully ? pending.Result : await pending.ConfigureAwait(false);
                }
                catch (Exception ex)
                {
                    (reason, error) = (RelayError.ClientReset, ex);
                    break;
                }

                if (flush.IsCompleted)
                {
                    reason = RelayError.ClientClosed;
                    break;
                }

                if (flush.IsCanceled)
                {
                    reason = RelayError.Aborted;
                    break;
                }
            }
        }
        finally
        {
            session.TrySetEndReason(reason, error?.Message);
            upstream.MarkClosed();
            writer.Complete();
        }
    }

    /// <summary>
    /// Copies one direction until its source ends or its destination goes away, then completes both
    /// (Kestrel SocketConnection: each loop completes its pipe with the reason in finally). Counting
    /// happens before the flush, so the counters are exact for every byte handed to the other side.
    /// </summary>
    private async Task PumpAsync(L4Session session, PipeReader reader, PipeWriter writer, bool inbound)
    {
        var reason = RelayError.None;
        Exception? error = null;
        var timeProvider = _runtime.TimeProvider;
        try
        {
            while (true)
            {
                ReadResult result;
                try
                {
                    result = await reader.ReadAsync().ConfigureAwait(false);
                }
                catch (Exception ex)
                {
                    (reason, error) = (inbound ? RelayError.ClientReset : RelayError.UpstreamReset, ex);
                    break;
                }

                var buffer = result.Buffer;
                var length = buffer.Length;
                if (length > 0)
                {
                    if (buffer.IsSingleSegment)
                    {
                        writer.Write(buffer.FirstSpan);
                    }
                    else
                    {
                        foreach (var segment in buffer)
                        {
                            writer.Write(segment.Span);
                        }
                    }

                    if (inbound)
                    {
                        session.AddIn(length, timeProvider.GetTimestamp());
                    }
                    else
                    {
                        session.AddOut(length, timeProvider.GetTimestamp());
                    }
                }

                reader.AdvanceTo(buffer.End);
                if (length > 0)
                {
                    FlushResult flush;
                    try
                    {
                        var pending = writer.FlushAsync();
                        flush = pending.IsCompletedSuccessfully ? pending.Result : await pending.ConfigureAwait(false);
                    }
                    catch (Exception ex)
                    {
                        (reason, error) = (inbound ? RelayError.UpstreamReset : RelayError.ClientReset, ex);
                        break;
                    }

                    if (flush.IsCompleted)
                    {
                        reason = inbound ? RelayError.UpstreamClosed : RelayError.ClientClosed;
                        break;
                    }
                }

                if (result.IsCompleted)
                {
                    reason = inbound ? RelayError.ClientClosed : RelayError.UpstreamClosed;
                    break;
                }

                if (result.IsCanceled)
                {
                    reason = RelayError.Aborted;
                    break;
                }
            }
        }
        finally
        {
            session.TrySetEndReason(reason, error?.Message);
            await reader.CompleteAsync().ConfigureAwait(false);
            await writer.CompleteAsync().ConfigureAwait(false);
        }
    }

    private void EndSession(L4Session session, ClusterState cluster, EndpointState endpoint)
    {
        _runtime.Sessions.TryRemove(session.Id, out _);
        endpoint.SessionEnded();
        var metrics = _runtime.Metrics;
        var reason = session.EndReason;
        var duration = _runtime.TimeProvider.GetElapsedTime(session.StartTimestamp);
        var (bytesIn, bytesOut) = session.TakeUnreportedBytes();
        metrics.Bytes.WithLabels(session.RouteName, "in").Inc(bytesIn);
        metrics.Bytes.WithLabels(session.RouteName, "out").Inc(bytesOut);
        metrics.SessionsActive.WithLabels(session.RouteName).Dec();
        metrics.SessionsEnded.WithLabels(session.RouteName, reason.ToString()).Inc();
        metrics.SessionDuration.WithLabels(session.RouteName).Observe(duration.TotalSeconds);
        if (reason == RelayError.UpstreamReset)
        {
            metrics.UpstreamResets.WithLabels(cluster.Name, endpoint.Id).Inc();

            // Only a reset before the upstream said anything counts against its health. Servers
            // reset finished sessions routinely (iperf3 resets its data connections at the end of
            // every test), and ejecting an endpoint for that refused the next sessions.
            if (session.BytesOut == 0)
            {
                _runtime.ReportPassiveFailure(cluster, endpoint, isConnectFailure: false);
            }
            else
            {
                endpoint.RecordReset();
            }

            RelayLog.SessionUpstreamError(_logger, session.Id, session.RouteName, reason, endpoint.Id, session.EndDetail);
        }

        // A session the upstream answered ends a run of passive failures; a bare connect does not,
        // or an endpoint that accepts and then resets at once would never be ejected.
        if (session.BytesOut > 0)
        {
            endpoint.ConnectSucceeded();
        }

        RelayLog.SessionEnded(_logger, session.Id, reason, session.BytesIn, session.BytesOut, duration.TotalMilliseconds);
    }

    private void Reject(ConnectionContext client, string routeName, RelayError reason)
    {
        _runtime.Metrics.SessionsRejected.WithLabels(routeName, reason.ToString()).Inc();
        RelayLog.SessionRejected(_logger, client.RemoteEndPoint, routeName, reason);

        // Returning from the handler closes the client connection (FIN) at once.
    }

    /// <summary>Closes sessions with no bytes either way for longer than their route's idle timeout.</summary>
    public void SweepIdle()
    {
        var now = _runtime.TimeProvider.GetTimestamp();
        var routes = _runtime.Snapshot.Config.Routes;
        foreach (var (_, session) in _runtime.Sessions)
        {
            if (!routes.TryGetValue(session.RouteName, out var route) || route.IdleTimeout <= TimeSpan.Zero)
            {
                continue;
            }

            var idle = _runtime.TimeProvider.GetElapsedTime(session.LastActivityTimestamp, now);
            if (idle >= route.IdleTimeout)
            {
                RelayLog.SessionIdle(_logger, session.Id, idle.TotalSeconds);
                session.Abort(RelayError.IdleTimeout, $"idle for {idle.TotalSeconds:F1} s");
            }
        }
    }

    private sealed class RouteCounters
    {
        private readonly ConcurrentDictionary<IPAddress, int> _perClient = new();
        public int Active;

        public bool TryAdmit(RouteConfig route, IPAddress? client, out RelayError error)
        {
            if (Interlocked.Increment(ref Active) > route.MaxSessions && route.MaxSessions != 0)
            {
                Interlocked.Decrement(ref Active);
                error = RelayError.RouteSessionLimit;
                return false;
            }

            if (client is not null && route.MaxSessionsPerClient != 0)
            {
                var count = _perClient.AddOrUpdate(client, 1, static (_, c) => c + 1);
                if (count > route.MaxSessionsPerClient)
                {
                    ReleaseClient(client);
                    Interlocked.Decrement(ref Active);
                    error = RelayError.ClientSessionLimit;
                    return false;
                }
            }
            else if (client is not null)
            {
                _perClient.AddOrUpdate(client, 1, static (_, c) => c + 1);
            }

            error = RelayError.None;
            return true;
        }

        public void Release(IPAddress? client)
        {
            Interlocked.Decrement(ref Active);
            if (client is not null)
            {
                ReleaseClient(client);
            }
        }

        private void ReleaseClient(IPAddress client)
        {
            while (_perClient.TryGetValue(client, out var count))
            {
                if (count <= 1 ? _perClient.TryRemove(new KeyValuePair<IPAddress, int>(client, count)) : _perClient.TryUpdate(client, count - 1, count))
                {
                    break;
                }
            }
        }
    }
}
