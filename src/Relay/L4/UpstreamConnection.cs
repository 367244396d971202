using System.Buffers;
using System.IO.Pipelines;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Http.Features;

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
/// </remarks>
internal sealed class UpstreamConnection : ConnectionContext
{
    private readonly Socket _socket;
    private readonly Pipe _input;
    private readonly Pipe _output;
    private readonly CancellationTokenSource _closed = new();
    private readonly int _blockBytes;
    private Task? _receiving;
    private Task? _sending;
    private volatile Exception? _abortReason;
    private int _disposed;

    public UpstreamConnection(Socket socket, MemoryPool<byte> pool, int maxBufferedBytes, bool inline)
    {
        _socket = socket;
        _blockBytes = pool.MaxBufferSize > 0 ? pool.MaxBufferSize : 4096;
        var scheduler = inline ? PipeScheduler.Inline : PipeScheduler.ThreadPool;
        _input = new Pipe(new PipeOptions(pool, scheduler, scheduler, maxBufferedBytes, maxBufferedBytes / 2, _blockBytes, useSynchronizationContext: false));
        _output = new Pipe(new PipeOptions(pool, scheduler, scheduler, maxBufferedBytes, maxBufferedBytes / 2, _blockBytes, useSynchronizationContext: false));
        Transport = new DuplexPipe(_input.Reader, _output.Writer);
        RemoteEndPoint = socket.RemoteEndPoint;
        LocalEndPoint = socket.LocalEndPoint;
        ConnectionId = $"upstream-{socket.Handle}";
        ConnectionClosed = _closed.Token;
    }

    public override IDuplexPipe Transport { get; set; }

    public override string ConnectionId { get; set; }

    public override IFeatureCollection Features { get; } = new FeatureCollection();

    public override IDictionary<object, object?> Items { get; set; } = new Dictionary<object, object?>();

    public void Start()
    {
        _receiving = ReceiveAsync();
        _sending = SendAsync();
    }

    public override void Abort(ConnectionAbortedException abortReason)
    {
        _abortReason ??= abortReason;

        // Disposing the socket ends both loops; their pipes complete with the abort reason.
        _socket.Dispose();
        _output.Reader.CancelPendingRead();
    }

    public override async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
        {
            await base.DisposeAsync().ConfigureAwait(false);
            return;
        }

        // The session has completed its ends of both pipes; make sure the loops finish too.
        _output.Reader.CancelPendingRead();
        _socket.Dispose();
        if (_receiving is not null)
        {
            await _receiving.ConfigureAwait(false);
        }

        if (_sending is not null)
        {
            await _sending.ConfigureAwait(false);
        }

        _closed.Dispose();
        await base.DisposeAsync().ConfigureAwait(false);
    }

    private async Task ReceiveAsync()
    {
        Exception? error = null;
        var writer = _input.Writer;
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

    private async Task SendAsync()
    {
        var reader = _output.Reader;
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
        try
        {
            _closed.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // Disposed after the loops finished: nobody is left to tell.
        }
    }

    private static bool IsReset(SocketError error) =>
        error is SocketError.ConnectionReset or SocketError.ConnectionAborted or SocketError.Shutdown or SocketError.NetworkReset;

    private sealed class DuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;

        public PipeWriter Output { get; } = output;
    }
}
