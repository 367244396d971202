using System.Net;
using System.Runtime.CompilerServices;
using System.Net.Sockets;

namespace Relay.LoadGen;

/// <summary>Socket helpers shared by the workloads. The loops use the Memory-based ValueTask overloads,
/// which reuse one cached awaitable per socket and direction, and the helpers' state machines are
/// pooled, so steady-state I/O allocates nothing (the JSON's allocated_bytes shows it).</summary>
internal static class SocketIo
{
    public static async Task<Socket> ConnectAsync(IPEndPoint target, double timeoutSeconds, CancellationToken cancellationToken)
    {
        var socket = new Socket(target.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(TimeSpan.FromSeconds(timeoutSeconds));
        try
        {
            await socket.ConnectAsync(target, timeout.Token).ConfigureAwait(false);
            return socket;
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            socket.Dispose();
            throw new TimeoutException($"connect to {target} timed out after {timeoutSeconds:0.###} s");
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public static async ValueTask SendAllAsync(Socket socket, ReadOnlyMemory<byte> data)
    {
        while (!data.IsEmpty)
        {
            var n = await socket.SendAsync(data, SocketFlags.None).ConfigureAwait(false);
            data = data[n..];
        }
    }

    /// <summary>Reads exactly <paramref name="buffer"/>.Length bytes; throws when the peer closes first.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public static async ValueTask ReceiveExactAsync(Socket socket, Memory<byte> buffer)
    {
        while (!buffer.IsEmpty)
        {
            var n = await socket.ReceiveAsync(buffer, SocketFlags.None).ConfigureAwait(false);
            if (n == 0)
            {
                throw new EndOfStreamException("peer closed the connection");
            }

            buffer = buffer[n..];
        }
    }

    /// <summary>Closes a socket during teardown.</summary>
    public static void Abort(Socket socket)
    {
        try
        {
            socket.Shutdown(SocketShutdown.Both);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            // Ignore errors from Shutdown: the socket is being torn down anyway.
        }

        socket.Dispose();
    }

    public static string Describe(Exception ex) => ex switch
    {
        SocketException se => $"{se.SocketErrorCode}: {se.Message}",
        AggregateException { InnerException: { } inner } => Describe(inner),
        _ => ex.Message,
    };
}
