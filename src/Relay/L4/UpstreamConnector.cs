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

    public async ValueTask<ConnectResult> ConnectAsync(DnsEndPoint address, TimeSpan timeout, CancellationToken cancellationToken)
    {
        EndPoint target = IPAddress.TryParse(address.Host, out var ip) ? new IPEndPoint(ip, address.Port) : address;
        var socket = ip is not null ? new Socket(ip.AddressFamily, SocketType.Stream, ProtocolType.Tcp) : new Socket(SocketType.Stream, ProtocolType.Tcp);
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
