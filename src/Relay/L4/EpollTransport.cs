using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Http.Features;
using Relay.Transport.Sockets;

namespace Relay.L4;

/// <summary>
/// Kestrel's transport for L4 routes where <see cref="EpollReactor.IsSupported"/>: Kestrel still
/// accepts each client and runs the route's connection handler, but the accepted socket is read and
/// written with non-blocking calls that wait on the relay's own epoll reactors instead of the
/// runtime's socket engine (docs/operations.md, "Tuning"). It behaves as Kestrel's
/// socket transport does: pipes bounded by <c>tuning.maxBufferedBytes</c>, the client's FIN completes
/// the input and fires <c>ConnectionClosed</c>, the application completing
/// its output closes the socket, and an abort closes it at once.
/// </summary>
internal sealed class EpollTransportFactory : IConnectionListenerFactory
{
    private readonly EpollReactorGroup _reactors;
    private readonly PipeOptions _pipeOptions;

    public EpollTransportFactory(EpollReactorGroup reactors, MemoryPool<byte> pool, int maxBufferedBytes, bool inline)
    {
        _reactors = reactors;
        _pipeOptions = UpstreamConnection.CreatePipeOptions(pool, maxBufferedBytes, inline);
    }

    public ValueTask<IConnectionListener> BindAsync(EndPoint endpoint, CancellationToken cancellationToken = default)
    {
        if (endpoint is not IPEndPoint ip)
        {
            throw new NotSupportedException($"the epoll transport listens on IP addresses only, not {endpoint}");
        }

        var socket = new Socket(ip.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            if (ip.Address.Equals(IPAddress.IPv6Any))
            {
                socket.DualMode = true;
            }

            socket.Bind(ip);
            socket.Listen(512);
        }
        catch (SocketException ex) when (ex.SocketErrorCode == SocketError.AddressAlreadyInUse)
        {
            socket.Dispose();
            throw new AddressInUseException(ex.Message, ex);
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        return new ValueTask<IConnectionListener>(new Listener(this, socket));
    }

    private sealed class Listener(EpollTransportFactory factory, Socket socket) : IConnectionListener
    {
        public EndPoint EndPoint { get; } = socket.LocalEndPoint!;

        public async ValueTask<ConnectionContext?> AcceptAsync(CancellationToken cancellationToken = default)
        {
            while (true)
            {
                Socket accepted;
                try
                {
                    accepted = await socket.AcceptAsync(cancellationToken).ConfigureAwait(false);
                }
                catch (ObjectDisposedException)
                {
                    return null;
                }
                catch (SocketException ex) when (ex.SocketErrorCode is SocketError.OperationAborted or SocketError.Interrupted)
                {
                    return null;
                }
                catch (SocketException)
                {
                    // A connection that reset before it was accepted: take the next.
                    continue;
                }

                try
                {
                    accepted.NoDelay = true;
                    var connection = new EpollConnection(accepted, factory._reactors.Next(), factory._pipeOptions);
                    connection.Start();
                    return connection;
                }
                catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
                {
                    // Reset between accept and registration: nothing to serve.
                    accepted.Dispose();
                }
            }
        }

        public ValueTask UnbindAsync(CancellationToken cancellationToken = default)
        {
            socket.Dispose();
            return ValueTask.CompletedTask;
        }

        public ValueTask DisposeAsync()
        {
            socket.Dispose();
            return ValueTask.CompletedTask;
        }
    }
}

/// <summary>A fixed set of reactors that connections are spread over, one per core by default.</summary>
internal sealed class EpollReactorGroup : IDisposable
{
    private readonly EpollReactor[] _reactors;
    private int _next = -1;

    public EpollReactorGroup(int count)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1);
        _reactors = new EpollReactor[count];
        for (var i = 0; i < count; i++)
        {
            _reactors[i] = EpollReactor.Create($"Relay epoll {i}");
        }
    }

    public int Count => _reactors.Length;

    /// <summary>Sockets registered now, over every reactor.</summary>
    public int Registered => _reactors.Sum(r => r.Registered);

    public EpollReactor Next() => _reactors[(int)((uint)Interlocked.Increment(ref _next) % (uint)_reactors.Length)];

    public void Dispose()
    {
        foreach (var reactor in _reactors)
        {
            reactor.Dispose();
        }
    }
}

/// <summary>One accepted client connection of the <see cref="EpollTransportFactory"/>.</summary>
internal sealed class EpollConnection : ConnectionContext
{
    private static long s_ids;

    private readonly Socket _socket;
    private readonly SocketReadiness _readiness;
    private readonly Pipe _input;
    private readonly Pipe _output;
    private readonly CancellationTokenSource _closed = new();
    private readonly Lock _shutdownGate = new();
    private IFeatureCollection? _features;
    private IDictionary<object, object?>? _items;
    private string? _connectionId;
    private Task _receiving = Task.CompletedTask;
    private Task _sending = Task.CompletedTask;
    private volatile ConnectionAbortedException? _shutdownReason;
    private bool _socketClosed;

    public EpollConnection(Socket socket, EpollReactor reactor, PipeOptions pipeOptions)
    {
        _socket = socket;
        Reactor = reactor;
        RemoteEndPoint = socket.RemoteEndPoint;
        LocalEndPoint = socket.LocalEndPoint;
        _input = new Pipe(pipeOptions);
        _output = new Pipe(pipeOptions);
        Transport = new DuplexPipe(_input.Reader, _output.Writer);
        _readiness = reactor.Register(socket);
    }

    /// <summary>The reactor this connection waits on; a session registers its upstream socket there too.</summary>
    public EpollReactor Reactor { get; }

    public override IDuplexPipe Transport { get; set; }

    public override string ConnectionId
    {
        get => _connectionId ??= $"epoll-{Interlocked.Increment(ref s_ids)}";
        set => _connectionId = value;
    }

    public override IFeatureCollection Features => LazyInitializer.EnsureInitialized(ref _features, static () => new FeatureCollection());

    public override IDictionary<object, object?> Items
    {
        get => LazyInitializer.EnsureInitialized(ref _items, static () => new Dictionary<object, object?>());
        set => _items = value;
    }

    public override CancellationToken ConnectionClosed
    {
        get => _closed.Token;
        set => throw new NotSupportedException("The connection's ConnectionClosed token is its own.");
    }

    public void Start()
    {
        _receiving = ReceiveLoopAsync();
        _sending = SendLoopAsync();
    }

    public override void Abort(ConnectionAbortedException abortReason)
    {
        _shutdownReason ??= abortReason;
        _output.Reader.CancelPendingRead();
        CloseSocket(abortReason);
    }

    public override async ValueTask DisposeAsync()
    {
        _input.Reader.Complete();
        _output.Writer.Complete();
        await _receiving.ConfigureAwait(false);
        await _sending.ConfigureAwait(false);
        _closed.Dispose();
        await base.DisposeAsync().ConfigureAwait(false);
    }

    private async Task ReceiveLoopAsync()
    {
        var writer = _input.Writer;
        var signal = _readiness.Readable;
        Exception? error = null;
        try
        {
            while (true)
            {
                var wait = signal.WaitAsync();
                if (!wait.IsCompletedSuccessfully)
                {
                    await wait.ConfigureAwait(false);
                }

                if (signal.IsClosed)
                {
                    break;
                }

                // Read until a read comes back short: the kernel had no more, and anything that comes
                // later raises a new edge (EpollReactor), so no call is spent to learn it is empty.
                // After a FIN or an error was seen, read on until the end itself is read.
                var drained = false;
                while (!drained)
                {
                    var memory = writer.GetMemory(1);
                    var read = _socket.Receive(memory.Span, SocketFlags.None, out var socketError);
                    if (socketError == SocketError.WouldBlock)
                    {
                        break;
                    }

                    if (socketError != SocketError.Success)
                    {
                        throw new SocketException((int)socketError);
                    }

                    if (read == 0)
                    {
                        return;
                    }

                    writer.Advance(read);
                    drained = read < memory.Length && !signal.HangUp;
                    var flushing = writer.FlushAsync();
                    var result = flushing.IsCompletedSuccessfully ? flushing.Result : await flushing.ConfigureAwait(false);
                    if (result.IsCompleted || result.IsCanceled)
                    {
                        // The application stopped reading.
                        return;
                    }
                }
            }
        }
        catch (SocketException ex) when (ex.SocketErrorCode is SocketError.ConnectionReset or SocketError.ConnectionAborted)
        {
            error = new ConnectionResetException(ex.Message, ex);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            error = ex;
        }
        finally
        {
            // Once the socket was shut (an abort, or the output's end), that is why the input ended.
            error = _shutdownReason ?? error;

            await writer.CompleteAsync(error).ConfigureAwait(false);
            FireConnectionClosed();
        }
    }

    private async Task SendLoopAsync()
    {
        var reader = _output.Reader;
        Exception? error = null;
        try
        {
            while (true)
            {
                var result = await reader.ReadAsync().ConfigureAwait(false);
                if (result.IsCanceled)
                {
                    break;
                }

                var buffer = result.Buffer;
                foreach (var segment in buffer)
                {
                    var sending = _readiness.SendAllAsync(_socket, segment);
                    if (!sending.IsCompletedSuccessfully)
                    {
                        await sending.ConfigureAwait(false);
                    }
                }

                reader.AdvanceTo(buffer.End);
                if (result.IsCompleted)
                {
                    break;
                }
            }
        }
        catch (SocketException ex) when (ex.SocketErrorCode is SocketError.ConnectionReset or SocketError.ConnectionAborted or SocketError.Shutdown)
        {
            error = new ConnectionResetException(ex.Message, ex);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            error = ex;
        }
        finally
        {
            // As Kestrel's socket transport: the output's end closes the connection both ways.
            CloseSocket(null);
            await reader.CompleteAsync(error).ConfigureAwait(false);
            _input.Writer.CancelPendingFlush();
        }
    }

    private void CloseSocket(ConnectionAbortedException? reason)
    {
        lock (_shutdownGate)
        {
            if (_socketClosed)
            {
                return;
            }

            _socketClosed = true;
            _shutdownReason ??= reason ?? new ConnectionAbortedException("The epoll transport's send loop completed.");
        }

        try
        {
            _socket.Shutdown(SocketShutdown.Both);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            // Already reset or closed.
        }

        // Unregister first: that ends both loops' waits before the descriptor can be reused.
        _readiness.Dispose();
        _socket.Dispose();
    }

    private void FireConnectionClosed()
    {
        // Off the reactor's thread: ConnectionClosed callbacks are the application's code.
        ThreadPool.UnsafeQueueUserWorkItem(static state => state.CancelClosed(), this, preferLocal: false);
    }

    private void CancelClosed()
    {
        try
        {
            _closed.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // Disposed already: nobody is listening.
        }
    }

    private sealed class DuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;

        public PipeWriter Output { get; } = output;
    }
}
