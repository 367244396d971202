using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Http.Features;
using Relay.Transport.Sockets;

namespace Relay.L4;

/// <summary>
/// The upstream leg of a session: a connected socket behind two pipes, one loop each way, as
/// Kestrel's SocketConnection has them, with one difference that is the reason this type exists:
/// completing <see cref="Transport"/>'s output sends a FIN (Shutdown(Send)) and keeps receiving, so
/// a client that half-closes still gets every byte of the upstream's answer. Kestrel's connection
/// shuts the socket down both ways instead (see README, Known limits).
/// </summary>
/// <remarks>
/// Receives wait for data with a zero-byte read before taking a pooled block, unless the previous
/// read filled its block (more is likely queued), so idle upstream legs hold no buffer.
/// <para>
/// The pipes, their loops, the <see cref="ConnectionClosed"/> source, <see cref="Items"/> and
/// <see cref="Features"/> are made on first use: a plain L4 session pumps the <see cref="Socket"/>
/// directly and never asks for them, which saves about 2 KiB per idle session (two pipes, their
/// readers, writers and segments, and two loop state machines). An echoed session reads
/// <see cref="Transport"/>, which starts the loops as before.
/// </para>
/// </remarks>
internal sealed class UpstreamConnection : ConnectionContext
{
    private readonly Socket _socket;
    private readonly PipeOptions _pipeOptions;
    private readonly object _sync = new();
    private readonly nint _handle;
    private readonly SocketReadiness? _readiness;
    private Pipe? _input;
    private Pipe? _output;
    private IDuplexPipe? _transport;
    private CancellationTokenSource? _closed;
    private IFeatureCollection? _features;
    private IDictionary<object, object?>? _items;
    private Task? _receiving;
    private Task? _sending;
    private volatile Exception? _abortReason;
    private volatile bool _isClosed;
    private int _disposed;
    private EndPoint? _localEndPoint;
    private string? _connectionId;

    /// <param name="socket">The connected socket.</param>
    /// <param name="pipeOptions">Options for both pipes; one instance is shared by every leg of a connector.</param>
    /// <param name="readiness">The socket's registration with an epoll reactor, if it has one; ended before the socket closes.</param>
    public UpstreamConnection(Socket socket, PipeOptions pipeOptions, SocketReadiness? readiness = null)
    {
        _socket = socket;
        _readiness = readiness;
        _pipeOptions = pipeOptions;
        RemoteEndPoint = EndPointOf(socket, remote: true);
        _handle = socket.Handle;
    }

    /// <summary>
    /// The socket's address, or null when the peer already reset the connection: getpeername fails
    /// with ENOTCONN for a connect that landed in a dying listener's backlog. That connection then
    /// fails on its first read or write, as a reset, like any other. Null too once the socket is closed.
    /// </summary>
    private static EndPoint? EndPointOf(Socket socket, bool remote)
    {
        try
        {
            return remote ? socket.RemoteEndPoint : socket.LocalEndPoint;
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            return null;
        }
    }

    /// <summary>
    /// Asked for by nothing on a plain session's path, so made on first use: the local address is
    /// three objects (about 100 bytes) per idle session, the id a string.
    /// </summary>
    public override EndPoint? LocalEndPoint
    {
        get => _localEndPoint ??= EndPointOf(_socket, remote: false);
        set => _localEndPoint = value;
    }

    /// <summary>The connected socket, for a caller that pumps it directly instead of through <see cref="Transport"/>.</summary>
    public Socket Socket => _socket;

    /// <summary>
    /// The socket's registration with an epoll reactor, for a direct pump that waits on it instead of
    /// the runtime's socket engine; null when the socket was connected without one.
    /// </summary>
    public SocketReadiness? Readiness => _readiness;

    /// <summary>Whether <see cref="Transport"/> has been asked for (its pipes and loops run).</summary>
    public bool PipesStarted => Volatile.Read(ref _transport) is not null;

    /// <summary>The pipes; the first read starts the loops that move bytes between them and the socket.</summary>
    public override IDuplexPipe Transport
    {
        get => Volatile.Read(ref _transport) ?? StartPipes();
        set => _transport = value;
    }

    public override string ConnectionId
    {
        get => _connectionId ??= $"upstream-{_handle}";
        set => _connectionId = value;
    }

    public override CancellationToken ConnectionClosed
    {
        get
        {
            lock (_sync)
            {
                if (_closed is null)
                {
                    if (_isClosed)
                    {
                        return new CancellationToken(canceled: true);
                    }

                    _closed = new CancellationTokenSource();
                }

                return _closed.Token;
            }
        }
        set => throw new NotSupportedException("An upstream connection's ConnectionClosed token is its own.");
    }

    public override IFeatureCollection Features => LazyInitializer.EnsureInitialized(ref _features, static () => new FeatureCollection());

    public override IDictionary<object, object?> Items
    {
        get => LazyInitializer.EnsureInitialized(ref _items, static () => new Dictionary<object, object?>());
        set => _items = value;
    }

    /// <summary>The options the pipes of one connector's legs share.</summary>
    public static PipeOptions CreatePipeOptions(MemoryPool<byte> pool, int maxBufferedBytes, bool inline)
    {
        var scheduler = inline ? PipeScheduler.Inline : PipeScheduler.ThreadPool;
        var blockBytes = pool.MaxBufferSize > 0 ? pool.MaxBufferSize : 4096;
        return new PipeOptions(pool, scheduler, scheduler, maxBufferedBytes, maxBufferedBytes / 2, blockBytes, useSynchronizationContext: false);
    }

    /// <summary>Tells <see cref="ConnectionClosed"/> that a direct pump saw the socket end.</summary>
    public void MarkClosed() => CancelClosed();

    public override void Abort(ConnectionAbortedException abortReason)
    {
        _abortReason ??= abortReason;

        // Disposing the socket ends both loops (or a direct pump); their pipes complete with the abort reason.
        _readiness?.Dispose();
        _socket.Dispose();
        Volatile.Read(ref _output)?.Reader.CancelPendingRead();
    }

    public override async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
        {
            await base.DisposeAsync().ConfigureAwait(false);
            return;
        }

        // The session has completed its ends of both pipes; make sure the loops finish too.
        Task? receiving, sending;
        lock (_sync)
        {
            _output?.Reader.CancelPendingRead();
            (receiving, sending) = (_receiving, _sending);
        }

        _readiness?.Dispose();
        _socket.Dispose();
        if (receiving is not null)
        {
            await receiving.ConfigureAwait(false);
        }

        if (sending is not null)
        {
            await sending.ConfigureAwait(false);
        }

        // The source has no timer, so it is left undisposed: a late reader of ConnectionClosed still gets a token.
        CancelClosed();
        await base.DisposeAsync().ConfigureAwait(false);
    }

    private IDuplexPipe StartPipes()
    {
        lock (_sync)
        {
            if (_transport is { } existing)
            {
                return existing;
            }

            _input = new Pipe(_pipeOptions);
            _output = new Pipe(_pipeOptions);
            var transport = new DuplexPipe(_input.Reader, _output.Writer);
            _receiving = ReceiveAsync(_input.Writer);
            _sending = SendAsync(_output.Reader);
            Volatile.Write(ref _transport, transport);
            return transport;
        }
    }

    private async Task ReceiveAsync(PipeWriter writer)
    {
        Exception? error = null;
        var lastFilled = false;
        try
        {
            while (true)
            {
                if (!lastFilled)
                {
                    var waited = await _socket.ReceiveAsync(Memory<byte>.Empty, SocketFlags.None).ConfigureAwait(false);
                    _ = waited;
                }

                var memory = writer.GetMemory(1);
                var read = await _socket.ReceiveAsync(memory, SocketFlags.None).ConfigureAwait(false);
                if (read == 0)
                {
                    break;
                }

                lastFilled = read == memory.Length;
                writer.Advance(read);
                var flush = await writer.FlushAsync().ConfigureAwait(false);
                if (flush.IsCompleted || flush.IsCanceled)
                {
                    break;
                }
            }
        }
        catch (SocketException ex) when (IsReset(ex.SocketErrorCode))
        {
            error = _abortReason ?? new ConnectionResetException(ex.Message, ex);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            error = _abortReason ?? new ConnectionAbortedException("The upstream connection was aborted.", ex);
        }
        finally
        {
            await writer.CompleteAsync(error).ConfigureAwait(false);
            CancelClosed();
        }
    }

    private async Task SendAsync(PipeReader reader)
    {
        var halfClose = false;
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
                    var remaining = segment;
                    while (!remaining.IsEmpty)
                    {
                        var sent = await _socket.SendAsync(remaining, SocketFlags.None).ConfigureAwait(false);
                        remaining = remaining[sent..];
                    }
                }

                reader.AdvanceTo(buffer.End);
                if (result.IsCompleted)
                {
                    halfClose = true;
                    break;
                }
            }
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            // The peer reset or the session aborted; the receive loop reports what happened.
        }
        finally
        {
            await reader.CompleteAsync().ConfigureAwait(false);
            if (halfClose)
            {
                try
                {
                    _socket.Shutdown(SocketShutdown.Send);
                }
                catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
                {
                    // Ignore: the socket is already gone, and the receive loop ends on its own.
                }
            }
        }
    }

    private void CancelClosed()
    {
        _isClosed = true;
        CancellationTokenSource? closed;
        lock (_sync)
        {
            closed = _closed;
        }

        closed?.Cancel();
    }

    private static bool IsReset(SocketError error) =>
        error is SocketError.ConnectionReset or SocketError.ConnectionAborted or SocketError.Shutdown or SocketError.NetworkReset;

    private sealed class DuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;

        public PipeWriter Output { get; } = output;
    }
}
