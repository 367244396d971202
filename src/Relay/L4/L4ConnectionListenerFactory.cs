using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;

namespace Relay.L4;

/// <summary>
/// The transport under the L4 routes' Kestrel servers: accepts sockets and hands each to Kestrel as
/// an <see cref="UpstreamConnection"/>, the same lean socket leg the upstream side uses. Kestrel's
/// own socket transport gives every connection two pipes, a receiver, and send and receive loops
/// from the first byte (about 2.4 KiB per connection); a plain L4 session pumps the two sockets
/// directly and needs none of that, and an echoed session gets the pipes when it reads
/// <see cref="ConnectionContext.Transport"/>, with Kestrel's close semantics: completing the output
/// shuts the socket down both ways. Kestrel still runs the accept loop, tracks connections and drains
/// and aborts them on stop.
/// </summary>
internal sealed class L4ConnectionListenerFactory(PipeOptions pipeOptions, bool noDelay) : IConnectionListenerFactory
{
    // Kestrel's default backlog (SocketTransportOptions.Backlog).
    private const int Backlog = 512;

    public ValueTask<IConnectionListener> BindAsync(EndPoint endpoint, CancellationToken cancellationToken = default)
    {
        // Kestrel's own helper: dual-mode IPv6, SO_REUSEADDR as its socket transport sets them.
        var socket = SocketTransportOptions.CreateDefaultBoundListenSocket(endpoint);
        try
        {
            socket.Listen(Backlog);
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        return new ValueTask<IConnectionListener>(new Listener(socket, pipeOptions, noDelay));
    }

    private sealed class Listener(Socket socket, PipeOptions pipeOptions, bool noDelay) : IConnectionListener
    {
        public EndPoint EndPoint { get; } = socket.LocalEndPoint!;

        public async ValueTask<ConnectionContext?> AcceptAsync(CancellationToken cancellationToken = default)
        {
            while (true)
            {
                try
                {
                    var accepted = await socket.AcceptAsync(cancellationToken).ConfigureAwait(false);
                    if (accepted.LocalEndPoint is IPEndPoint)
                    {
                        accepted.NoDelay = noDelay;
                    }

                    return new UpstreamConnection(accepted, pipeOptions, "l4-", closeBothWays: true);
                }
                catch (ObjectDisposedException)
                {
                    // Unbound: Kestrel takes null as the end of accepting.
                    return null;
                }
                catch (SocketException ex) when (ex.SocketErrorCode == SocketError.OperationAborted)
                {
                    return null;
                }
                catch (SocketException)
                {
                    // A connection reset while it waited in the backlog (Kestrel's listener goes on too).
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
