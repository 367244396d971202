using System.Buffers;
using System.Net.Sockets;

namespace Relay.LoadGen;

/// <summary>
/// The built-in backend (--serve): echo, sink or source on one TCP address. A connection holds no
/// buffer until its first byte arrives (zero-byte read), then a pooled 4 KiB buffer that grows to
/// 64 KiB once a read fills it, returned when the connection ends.
/// </summary>
internal sealed class EchoServer
{
    private const int SmallBuffer = 4 * 1024;
    private const int LargeBuffer = 64 * 1024;
    private const int SolSocket = 1; // Linux SOL_SOCKET
    private const int SoReuseAddr = 2; // Linux SO_REUSEADDR
    private static readonly byte[] _sourceData = CreateSourceData();

    private readonly LoadGenOptions _options;
    private long _accepted;
    private long _active;
    private long _bytesIn;
    private long _bytesOut;

    public EchoServer(LoadGenOptions options) => _options = options;

    public async Task<RunResult> RunAsync(CancellationToken cancellationToken)
    {
        var o = _options;
        var address = o.ServeAddress!;
        var mode = o.ServeMode.ToString().ToLowerInvariant();
        using var listener = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        // SO_REUSEADDR alone, so a restart is not refused by TIME_WAIT connections. Not .NET's
        // ReuseAddress: on Linux it also sets SO_REUSEPORT, and then a second server on the same
        // port (HAProxy sets SO_REUSEPORT) silently takes half of our connections.
        if (OperatingSystem.IsLinux())
        {
            listener.SetRawSocketOption(SolSocket, SoReuseAddr, BitConverter.GetBytes(1));
        }

        try
        {
            listener.Bind(address);
            listener.Listen(4096);
        }
        catch (SocketException ex)
        {
            throw new InvalidOperationException($"cannot listen on {address}: {SocketIo.Describe(ex)}", ex);
        }

        var started = DateTime.UtcNow;
        Console.Out.WriteLine($"serving {mode} on {listener.LocalEndPoint}");
        Console.Out.Flush();

        using var lifetime = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        if (o.DurationSeconds > 0)
        {
            lifetime.CancelAfter(TimeSpan.FromSeconds(o.DurationSeconds));
        }

        try
        {
            while (true)
            {
                var socket = await listener.AcceptAsync(lifetime.Token).ConfigureAwait(false);
                socket.NoDelay = true;
                Interlocked.Increment(ref _accepted);
                _ = HandleAsync(socket, lifetime.Token);
            }
        }
        catch (OperationCanceledException)
        {
            // The lifetime ended (duration or signal): stop accepting.
        }

        return new RunResult
        {
            Mode = "serve",
            Target = address.ToString(),
            Sessions = (int)Math.Min(int.MaxValue, Interlocked.Read(ref _accepted)),
            ElapsedSeconds = (DateTime.UtcNow - started).TotalSeconds,
            BytesReceived = Interlocked.Read(ref _bytesIn),
            BytesSent = Interlocked.Read(ref _bytesOut),
            Note = $"{mode}; {Interlocked.Read(ref _active)} connections still open",
        };
    }

    private async Task HandleAsync(Socket socket, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _active);
        byte[]? buffer = null;
        try
        {
            if (_options.ServeMode == ServeMode.Source)
            {
                while (true)
                {
                    var n = await socket.SendAsync(_sourceData.AsMemory(), SocketFlags.None, cancellationToken).ConfigureAwait(false);
                    Interlocked.Add(ref _bytesOut, n);
                }
            }

            var echo = _options.ServeMode == ServeMode.Echo;

            // No buffer before data: an idle connection costs only its socket.
            await socket.ReceiveAsync(Memory<byte>.Empty, SocketFlags.None, cancellationToken).ConfigureAwait(false);
            buffer = ArrayPool<byte>.Shared.Rent(SmallBuffer);
            while (true)
            {
                var n = await socket.ReceiveAsync(buffer.AsMemory(), SocketFlags.None, cancellationToken).ConfigureAwait(false);
                if (n == 0)
                {
                    break;
                }

                Interlocked.Add(ref _bytesIn, n);
                if (echo)
                {
                    await SocketIo.SendAllAsync(socket, buffer.AsMemory(0, n)).ConfigureAwait(false);
                    Interlocked.Add(ref _bytesOut, n);
                }

                if (n == buffer.Length && buffer.Length < LargeBuffer)
                {
                    ArrayPool<byte>.Shared.Return(buffer);
                    buffer = null;
                    buffer = ArrayPool<byte>.Shared.Rent(LargeBuffer);
                }
            }
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException or OperationCanceledException)
        {
            // The client went away or the server is stopping: the connection simply ends.
        }
        finally
        {
            if (buffer is not null)
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }

            SocketIo.Abort(socket);
            Interlocked.Decrement(ref _active);
        }
    }

    private static byte[] CreateSourceData()
    {
        var data = new byte[LargeBuffer];
        data.AsSpan().Fill((byte)'s');
        return data;
    }
}
