using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Relay.Configuration;
using Relay.Transport.Sockets;

namespace Relay.L4;

/// <summary>
/// Opens upstream legs as <see cref="UpstreamConnection"/>s, so both legs of a session are
/// <see cref="ConnectionContext"/>s with pipes from the same memory pool.
/// </summary>
public sealed class UpstreamConnector : IDisposable
{
    private readonly MemoryPool<byte> _pool;
    private readonly PipeOptions _pipeOptions;

    internal UpstreamConnector(TransportTuning tuning, BlockMemoryPoolFactory? poolFactory)
    {
        _pool = poolFactory?.Create() ?? new BlockMemoryPool(RelayDefaults.BlockBytes, maxCachedBlocks: 256);
        _pipeOptions = UpstreamConnection.CreatePipeOptions(_pool, tuning.MaxBufferedBytes, tuning.InlineScheduling);
    }

    /// <summary>An address literal as an <see cref="IPEndPoint"/>; a host name as is, for the connect to resolve.</summary>
    internal static EndPoint TargetOf(DnsEndPoint address) =>
        IPAddress.TryParse(address.Host, out var ip) ? new IPEndPoint(ip, address.Port) : address;

    /// <summary>A TCP socket for <paramref name="target"/>: of its address family, or dual-mode for a host name.</summary>
    internal static Socket NewSocket(EndPoint target) => target is IPEndPoint ip
        ? new Socket(ip.AddressFamily, SocketType.Stream, ProtocolType.Tcp)
        : new Socket(SocketType.Stream, ProtocolType.Tcp);

    /// <summary>
    /// Connects to <paramref name="address"/> within <paramref name="timeout"/>. With a
    /// <paramref name="reactor"/> (a client on the epoll transport) and an IP address, the connect is
    /// non-blocking and waits on the reactor, so the socket never joins the runtime's socket engine,
    /// which would otherwise wake for every answer the upstream sends (docs/operations.md, "Tuning").
    /// </summary>
    public async ValueTask<ConnectResult> ConnectAsync(DnsEndPoint address, TimeSpan timeout, CancellationToken cancellationToken, EpollReactor? reactor = null)
    {
        var target = TargetOf(address);
        var socket = NewSocket(target);
        socket.NoDelay = true;
        if (reactor is not null && target is IPEndPoint ip)
        {
            return await ConnectOnReactorAsync(socket, ip, reactor, timeout, cancellationToken).ConfigureAwait(false);
        }

        using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        cts.CancelAfter(timeout);
        try
        {
            await socket.ConnectAsync(target, cts.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            socket.Dispose();
            return TimedOut(timeout);
        }
        catch (SocketException ex)
        {
            socket.Dispose();
            return Failed(ex.SocketErrorCode, ex.Message);
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        return new ConnectResult(new UpstreamConnection(socket, _pipeOptions), RelayError.None, null);
    }

    private async ValueTask<ConnectResult> ConnectOnReactorAsync(Socket socket, IPEndPoint target, EpollReactor reactor, TimeSpan timeout, CancellationToken cancellationToken)
    {
        SocketReadiness? readiness = null;
        var connected = false;
        try
        {
            // Registered only once the connect is under way: an unconnected socket polls as hung up.
            socket.Blocking = false;
            try
            {
                socket.Connect(target);
            }
            catch (SocketException ex) when (ex.SocketErrorCode is SocketError.WouldBlock or SocketError.InProgress or SocketError.AlreadyInProgress)
            {
                // Under way: the reactor reports its end as writable (or as an error).
            }

            readiness = reactor.Register(socket);
            var wait = readiness.Writable.WaitAsync();
            if (!wait.IsCompleted)
            {
                using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                var waiting = wait.AsTask();
                if (await Task.WhenAny(waiting, Task.Delay(timeout, cts.Token)).ConfigureAwait(false) != waiting)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    return TimedOut(timeout);
                }

                await cts.CancelAsync().ConfigureAwait(false);
            }

            var error = (SocketError)(int)socket.GetSocketOption(SocketOptionLevel.Socket, SocketOptionName.Error)!;
            if (error == SocketError.Success && !socket.Connected)
            {
                error = SocketError.NotConnected;
            }

            if (error != SocketError.Success)
            {
                return Failed(error, new SocketException((int)error).Message);
            }

            connected = true;
            return new ConnectResult(new UpstreamConnection(socket, _pipeOptions, readiness), RelayError.None, null);
        }
        catch (SocketException ex)
        {
            return Failed(ex.SocketErrorCode, ex.Message);
        }
        finally
        {
            if (!connected)
            {
                // Unregistered before the close, so the descriptor cannot be reused while registered.
                readiness?.Dispose();
                socket.Dispose();
            }
        }
    }

    private static ConnectResult Failed(SocketError error, string detail) =>
        new(null, error == SocketError.ConnectionRefused ? RelayError.UpstreamConnectRefused : RelayError.UpstreamConnectFailed, detail);

    private static ConnectResult TimedOut(TimeSpan timeout) =>
        new(null, RelayError.UpstreamConnectTimeout, $"no answer within {DurationParser.Format(timeout)}");

    /// <summary>How long <see cref="AcceptsConnectionsAsync"/> waits for a connect to an endpoint.</summary>
    internal static readonly TimeSpan ProbeConnectTimeout = TimeSpan.FromMilliseconds(300);

    /// <summary>The first of a probe's two connect attempts (see <see cref="AcceptsConnectionsAsync"/>).</summary>
    internal static readonly TimeSpan ProbeFirstAttempt = TimeSpan.FromMilliseconds(50);

    /// <summary>
    /// How long <see cref="AcceptsConnectionsAsync"/> waits on a quiet probe connection before it calls
    /// the endpoint alive. A killed process's listener can outlive its connections' FINs: a connect
    /// lands in the dying listener's backlog and is reset only when the listener goes. That took 5-10
    /// ms on a loaded 2-core machine, and more than 50 ms (the wait before session 18) about once in
    /// a hundred kills in perf/failover-stall.sh (docs/benchmarks.md, issue 5, session 18).
    /// </summary>
    internal static readonly TimeSpan ProbeHold = TimeSpan.FromMilliseconds(250);

    /// <summary>
    /// Whether <paramref name="address"/> is served by a live process: tells a server's own close from
    /// its death. The probe connects (within <see cref="ProbeConnectTimeout"/>) and at once sends FIN
    /// without data, which a server's protocol never sees as a request. Then, within
    /// <paramref name="hold"/> (default <see cref="ProbeHold"/>):
    /// <list type="bullet">
    /// <item>bytes (a greeting), a FIN in answer (a process accepted the connection and closed it), or
    /// nothing at all: alive;</item>
    /// <item>a refused or unanswered connect (two attempts, see <see cref="ProbeConnectAsync"/>), or a reset: dead. A dead listener's queued connections
    /// are reset when it goes. The FIN matters for the other case seen here: a connect whose handshake
    /// the kernel had half done when the listener closed is established on this side only, and stays
    /// so without a word until this side sends a segment, which the FIN is; the answer is a reset.</item>
    /// </list>
    /// Returns what showed the server alive, or null.
    /// </summary>
    internal static async Task<string?> AcceptsConnectionsAsync(DnsEndPoint address, TimeProvider time, TimeSpan? hold = null)
    {
        var target = TargetOf(address);
        using var socket = await ProbeConnectAsync(target, time).ConfigureAwait(false);
        if (socket is null)
        {
            return null;
        }

        var keep = hold ?? ProbeHold;
        using var held = new CancellationTokenSource(keep, time);
        var buffer = new byte[64];
        try
        {
            var read = await socket.ReceiveAsync(buffer, SocketFlags.None, held.Token).ConfigureAwait(false);
            return read > 0
                ? $"it accepted a new connection and sent {read} byte(s) on it"
                : "it accepted a new connection and closed it in answer to ours";
        }
        catch (OperationCanceledException) when (held.IsCancellationRequested)
        {
            return $"it accepted a new connection and kept it open for {keep.TotalMilliseconds:F0} ms";
        }
        catch (SocketException)
        {
            // Reset: the listener that took the connection, or the half-done handshake, is gone.
            return null;
        }
    }

    /// <summary>
    /// The probe's connect, half-closed at once; null when refused or unanswered. A SYN that meets a
    /// listener while it closes can go unanswered, where a second SYN a moment later is refused: the
    /// first attempt gets <see cref="ProbeFirstAttempt"/>, a second one the rest of
    /// <see cref="ProbeConnectTimeout"/>.
    /// </summary>
    private static async Task<Socket?> ProbeConnectAsync(EndPoint target, TimeProvider time)
    {
        for (var attempt = 0; attempt < 2; attempt++)
        {
            var socket = NewSocket(target);
            try
            {
                using (var connecting = new CancellationTokenSource(attempt == 0 ? ProbeFirstAttempt : ProbeConnectTimeout - ProbeFirstAttempt, time))
                {
                    await socket.ConnectAsync(target, connecting.Token).ConfigureAwait(false);
                }

                socket.Shutdown(SocketShutdown.Send);
                return socket;
            }
            catch (OperationCanceledException)
            {
                socket.Dispose();
            }
            catch (SocketException)
            {
                socket.Dispose();
                return null;
            }
        }

        return null;
    }

    /// <summary>Wraps a socket that is already connected (an agent's takeover connection) as an upstream leg.</summary>
    internal ConnectionContext Adopt(Socket socket)
    {
        return new UpstreamConnection(socket, _pipeOptions);
    }

    public void Dispose() => _pool.Dispose();
}

public readonly record struct ConnectResult(ConnectionContext? Connection, RelayError Error, string? Detail);
