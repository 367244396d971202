using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Security.Authentication;
using Relay.Echo;
using Relay.Hosting;
using Relay.Transport.Control;
using Relay.Transport.Multipath;

namespace Relay.Agent;

/// <summary>
/// `relay agent` in-process: listens for relays on the control address, keeps shadow sessions
/// against the local backend, and answers takeovers (docs/agent.md).
/// </summary>
public sealed partial class AgentHost : IAsyncDisposable
{
    private static readonly TimeSpan HandshakeTimeout = TimeSpan.FromSeconds(10);

    private readonly Socket _listener;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stop = new();
    private readonly ConcurrentDictionary<(long RelayId, long SessionId), ShadowSession> _registry = new();
    private readonly ConcurrentDictionary<Task, bool> _connections = new();
    private readonly ConcurrentDictionary<long, MultipathChannel> _echoChannels = new();
    private Task _acceptLoop = Task.CompletedTask;
    private long _handshakeFailures;
    private long _droppedFrames;
    private long _unknownSessionFrames;
    private long _takeovers;
    private long _takeoversRefused;
    private int _spliced;
    private int _disposed;

    private AgentHost(AgentOptions options, ILoggerFactory loggerFactory)
    {
        Options = options;
        _logger = loggerFactory.CreateLogger("Relay.Agent");
        var backend = options.Backend!;
        BackendEndPoint = L4.UpstreamConnector.TargetOf(backend);
        BackendText = $"{backend.Host}:{backend.Port}";
        var control = options.Control!;
        _listener = new Socket(control.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            _listener.Bind(control);
            _listener.Listen(512);
        }
        catch
        {
            _listener.Dispose();
            throw;
        }

        ControlEndPoint = (IPEndPoint)_listener.LocalEndPoint!;
    }

    /// <summary>The bound control address (the real port when the options gave port 0).</summary>
    public IPEndPoint ControlEndPoint { get; }

    public AgentOptions Options { get; }

    /// <summary>Control connections whose handshake failed (wrong key, garbage, timeout).</summary>
    public long HandshakeFailures => Interlocked.Read(ref _handshakeFailures);

    /// <summary>Malformed or unknown frames and messages dropped.</summary>
    public long DroppedFrames => Interlocked.Read(ref _droppedFrames);

    /// <summary>Well-formed echo frames for a session this agent does not hold (late frames of a failed or closed shadow).</summary>
    public long UnknownSessionFrames => Interlocked.Read(ref _unknownSessionFrames);

    public long TakeoversCompleted => Interlocked.Read(ref _takeovers);

    public long TakeoversRefused => Interlocked.Read(ref _takeoversRefused);

    /// <summary>Shadow sessions held now, over all relays (spliced ones included until they end).</summary>
    public int ShadowSessions => _registry.Count;

    /// <summary>Sessions taken over and live now.</summary>
    public int SplicedSessions => Volatile.Read(ref _spliced);

    /// <summary>
    /// The counters of each live echo channel (docs/transport.md: drops by reason, FEC, retransmits,
    /// paths), keyed by the relay id of its echo connection. A snapshot; read-only.
    /// </summary>
    public IReadOnlyDictionary<long, ChannelMetrics> EchoChannelMetrics() =>
        _echoChannels.ToDictionary(static e => e.Key, static e => e.Value.GetMetrics());

    internal EndPoint BackendEndPoint { get; }

    internal string BackendText { get; }

    internal CancellationToken Stopping => _stop.Token;

    /// <summary>Validates <paramref name="options"/>, binds the control listener and starts accepting relays.</summary>
    /// <exception cref="ArgumentException">The options are invalid; the message lists every problem.</exception>
    /// <exception cref="SocketException">The control address cannot be bound.</exception>
    public static Task<AgentHost> StartAsync(AgentOptions options, ILoggerFactory loggerFactory, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(loggerFactory);
        cancellationToken.ThrowIfCancellationRequested();
        var errors = options.Validate();
        if (errors.Count > 0)
        {
            throw new ArgumentException(string.Join("; ", errors), nameof(options));
        }

        var host = new AgentHost(options, loggerFactory);
        host._acceptLoop = Task.Run(host.AcceptLoopAsync, CancellationToken.None);
        AgentLog.Started(host._logger, options.Id, host.ControlEndPoint, host.BackendText);

        // A takeover should not be the first caller of the code it runs (docs/agent.md).
        _ = CodeWarmup.StartInBackground(
            (methods, took) => AgentLog.TakeoverPathCompiled(host._logger, methods, took.TotalMilliseconds),
            typeof(AgentHost), typeof(ShadowSession), typeof(EchoConnection), typeof(RetainedOutput), typeof(EchoWire),
            typeof(ControlChannel), typeof(AgentLog));
        return Task.FromResult(host);
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        await _stop.CancelAsync().ConfigureAwait(false);
        _listener.Dispose();
        await _acceptLoop.ConfigureAwait(false);
        try
        {
            await Task.WhenAll(_connections.Keys).WaitAsync(TimeSpan.FromSeconds(10)).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            // A connection stuck in a socket call; the sessions below are closed regardless.
        }

        foreach (var (_, session) in _registry)
        {
            session.Close();
        }

        _registry.Clear();
        AgentLog.Stopped(_logger);
        _stop.Dispose();
    }

    internal bool TryRegister(ShadowSession session, out string? refusal)
    {
        refusal = null;
        if (_registry.Count >= Options.MaxShadowSessions)
        {
            refusal = $"the agent holds its maximum of {Options.MaxShadowSessions} shadow sessions (agent.maxShadowSessions)";
            return false;
        }

        if (!_registry.TryAdd((session.RelayId, session.SessionId), session))
        {
            refusal = $"session {session.SessionId} of relay {session.RelayId} already has a shadow on this agent";
            return false;
        }

        return true;
    }

    internal void Unregister(ShadowSession session) =>
        _registry.TryRemove(new KeyValuePair<(long, long), ShadowSession>((session.RelayId, session.SessionId), session));

    internal void EchoChannelStarted(long relayId, MultipathChannel channel) => _echoChannels[relayId] = channel;

    internal void EchoChannelEnded(long relayId, MultipathChannel channel) =>
        _echoChannels.TryRemove(new KeyValuePair<long, MultipathChannel>(relayId, channel));

    internal void CountDropped() => Interlocked.Increment(ref _droppedFrames);

    internal void CountUnknownSession() => Interlocked.Increment(ref _unknownSessionFrames);

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                socket = await _listener.AcceptAsync(_stop.Token).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException)
            {
                return;
            }
            catch (SocketException ex) when (ex.SocketErrorCode is SocketError.ConnectionAborted or SocketError.ConnectionReset)
            {
                continue;
            }
            catch (Exception ex)
            {
                AgentLog.AcceptLoopFailed(_logger, ex);
                return;
            }

            var task = Task.Run(() => HandleConnectionAsync(socket), CancellationToken.None);
            _connections[task] = true;
            _ = task.ContinueWith(static (t, state) => ((ConcurrentDictionary<Task, bool>)state!).TryRemove(t, out _), _connections, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        }
    }

    private async Task HandleConnectionAsync(Socket socket)
    {
        var remote = socket.RemoteEndPoint;
        ControlChannel control;
        HelloRequest hello;
        using (var timeout = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token))
        {
            timeout.CancelAfter(HandshakeTimeout);
            try
            {
                control = await ControlChannel.AcceptAsync(socket, Options.Psk, timeout.Token).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is AuthenticationException or IOException or SocketException or InvalidDataException or OperationCanceledException or ObjectDisposedException)
            {
                socket.Dispose();
                if (!_stop.IsCancellationRequested)
                {
                    Interlocked.Increment(ref _handshakeFailures);
                    AgentLog.HandshakeFailed(_logger, remote, ex is OperationCanceledException ? "no handshake within 10 s" : ex.Message);
                }

                return;
            }

            try
            {
                var message = await control.ReceiveAsync(timeout.Token).ConfigureAwait(false);
                if (message is null)
                {
                    await control.DisposeAsync().ConfigureAwait(false);
                    return;
                }

                string? refusal = null;
                if (!EchoWire.TryReadHello(message, out hello))
                {
                    refusal = "the first message must be a well-formed Hello";
                    CountDropped();
                }
                else if (hello.Version != EchoWire.Version)
                {
                    refusal = $"this agent speaks echo protocol version {EchoWire.Version}, the relay sent {hello.Version}";
                }

                if (refusal is not null)
                {
                    AgentLog.HelloRefused(_logger, remote, refusal);
                    await control.SendAsync(EchoWire.Refused(refusal), timeout.Token).ConfigureAwait(false);
                    await control.DisposeAsync().ConfigureAwait(false);
                    return;
                }
            }
            catch (Exception ex) when (ex is AuthenticationException or IOException or SocketException or InvalidDataException or OperationCanceledException or ObjectDisposedException)
            {
                if (!_stop.IsCancellationRequested)
                {
                    AgentLog.HelloRefused(_logger, remote, $"no hello: {ex.Message}");
                }

                await control.DisposeAsync().ConfigureAwait(false);
                return;
            }
        }

        if (hello.Purpose == ConnectionPurpose.Echo)
        {
            try
            {
                await new EchoConnection(this, control, hello, remote, _logger).RunAsync(_stop.Token).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
            {
                AgentLog.EchoDisconnected(_logger, hello.RelayId, ex.Message, 0);
            }
            finally
            {
                await control.DisposeAsync().ConfigureAwait(false);
            }
        }
        else
        {
            await RunTakeoverAsync(control, socket, remote).ConfigureAwait(false);
        }
    }
}
