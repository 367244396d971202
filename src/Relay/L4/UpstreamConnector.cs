using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Relay.Configuration;

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

    public async ValueTask<ConnectResult> ConnectAsync(DnsEndPoint address, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var target = TargetOf(address);
        var socket = NewSocket(target);
        socket.NoDelay = true;
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        cts.CancelAfter(timeout);
        try
        {
            await socket.ConnectAsync(target, cts.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            socket.Dispose();
            return new ConnectResult(null, RelayError.UpstreamConnectTimeout, $"no answer within {DurationParser.Format(timeout)}");
        }
        catch (SocketException ex)
        {
            socket.Dispose();
            var error = ex.SocketErrorCode == SocketError.ConnectionRefused ? RelayError.UpstreamConnectRefused : RelayError.UpstreamConnectFailed;
            return new ConnectResult(null, error, ex.Message);
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        return new ConnectResult(new UpstreamConnection(socket, _pipeOptions), RelayError.None, null);
    }

    /// <summary>Wraps a socket that is already connected (an agent's takeover connection) as an upstream leg.</summary>
    internal ConnectionContext Adopt(Socket socket)
    {
        return new UpstreamConnection(socket, _pipeOptions);
    }

    public void Dispose() => _pool.Dispose();
}

public readonly record struct ConnectResult(ConnectionContext? Connection, RelayError Error, string? Detail);
