using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Http.Features;
using Relay.Clusters;
using Relay.L4;

namespace Relay.L7;

/// <summary>
/// Carries an upgraded HTTP connection (WebSocket or any other Upgrade) as an L4 session: once the
/// upstream answers 101, the connection is registered in <see cref="RelayRuntime.Sessions"/> with
/// exact byte counts both ways, shows in /api/sessions, counts in the session metrics, and obeys
/// the route's idle timeout and <see cref="L4Session.Abort"/> like any L4 session.
/// </summary>
internal sealed class UpgradeSession : IHttpUpgradeFeature
{
    private readonly RelayRuntime _runtime;
    private readonly string _route;
    private readonly HttpContext _context;
    private readonly IHttpUpgradeFeature _inner;
    private readonly ILogger _logger;
    private EndpointState? _endpoint;
    private L4Session? _session;
    private CancellationTokenRegistration _abortRegistration;

    public UpgradeSession(RelayRuntime runtime, string route, HttpContext context, IHttpUpgradeFeature inner, ILogger logger)
    {
        _runtime = runtime;
        _route = route;
        _context = context;
        _inner = inner;
        _logger = logger;
        context.Features.Set<IHttpUpgradeFeature>(this);
    }

    public bool IsUpgradableRequest => _inner.IsUpgradableRequest;

    public L4Session? Session => _session;

    public void SetEndpoint(EndpointState endpoint) => _endpoint = endpoint;

    public async Task<Stream> UpgradeAsync()
    {
        var stream = await _inner.UpgradeAsync().ConfigureAwait(false);
        var connection = new DefaultConnectionContext(_context.Connection.Id)
        {
            RemoteEndPoint = _context.Connection.RemoteIpAddress is { } ip ? new System.Net.IPEndPoint(ip, _context.Connection.RemotePort) : null,
            LocalEndPoint = _context.Connection.LocalIpAddress is { } local ? new System.Net.IPEndPoint(local, _context.Connection.LocalPort) : null,
        };
        var session = new L4Session(_runtime.NextSessionId(), _route, connection, _runtime.TimeProvider) { Endpoint = _endpoint };
        _abortRegistration = connection.ConnectionClosed.UnsafeRegister(static state => ((HttpContext)state!).Abort(), _context);
        _session = session;
        _runtime.Sessions[session.Id] = session;
        _runtime.Metrics.SessionsTotal.WithLabels(_route).Inc();
        _runtime.Metrics.SessionsActive.WithLabels(_route).Inc();
        return new CountingStream(stream, session, _runtime.TimeProvider);
    }

    /// <summary>Unregisters the session once the forwarder is done with the connection.</summary>
    public void End()
    {
        _context.Features.Set(_inner);
        if (_session is not { } session)
        {
            return;
        }

        _runtime.Sessions.TryRemove(session.Id, out _);
        _abortRegistration.Dispose();
        var metrics = _runtime.Metrics;
        metrics.SessionsActive.WithLabels(_route).Dec();
        var reason = session.EndReason == RelayError.None ? "Completed" : session.EndReason.ToString();
        metrics.SessionsEnded.WithLabels(_route, reason).Inc();
        metrics.SessionDuration.WithLabels(_route).Observe(_runtime.TimeProvider.GetElapsedTime(session.StartTimestamp).TotalSeconds);
        var (bytesIn, bytesOut) = session.TakeUnreportedBytes();
        metrics.Bytes.WithLabels(_route, "in").Inc(bytesIn);
        metrics.Bytes.WithLabels(_route, "out").Inc(bytesOut);
        L7Log.UpgradeEnded(_logger, _route, session.Id, _endpoint?.Id ?? "?", session.BytesIn, session.BytesOut);
        _session = null;
    }

    /// <summary>The client side of an upgraded connection: counts bytes read (in) and written (out).</summary>
    private sealed class CountingStream(Stream inner, L4Session session, TimeProvider time) : Stream
    {
        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position
        {
            get => throw new NotSupportedException();
            set => throw new NotSupportedException();
        }

        public override void Flush() => inner.Flush();

        public override Task FlushAsync(CancellationToken cancellationToken) => inner.FlushAsync(cancellationToken);

        public override int Read(byte[] buffer, int offset, int count)
        {
            var read = inner.Read(buffer, offset, count);
            session.AddIn(read, time.GetTimestamp());
            return read;
        }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            var read = await inner.ReadAsync(buffer, cancellationToken).ConfigureAwait(false);
            if (read > 0)
            {
                session.AddIn(read, time.GetTimestamp());
            }

            return read;
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override void Write(byte[] buffer, int offset, int count)
        {
            inner.Write(buffer, offset, count);
            session.AddOut(count, time.GetTimestamp());
        }

        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            await inner.WriteAsync(buffer, cancellationToken).ConfigureAwait(false);
            session.AddOut(buffer.Length, time.GetTimestamp());
        }

        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                inner.Dispose();
            }

            base.Dispose(disposing);
        }

        public override async ValueTask DisposeAsync()
        {
            await inner.DisposeAsync().ConfigureAwait(false);
            await base.DisposeAsync().ConfigureAwait(false);
        }
    }
}
