using System.Buffers;
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
    private readonly TransportTuning _tuning;

    internal UpstreamConnector(TransportTuning tuning, BlockMemoryPoolFactory? poolFactory)
    {
        _tuning = tuning;
        _pool = poolFactory?.Create() ?? new BlockMemoryPool(RelayDefaults.BlockBytes, maxCachedBlocks: 256);
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

        var connection = new UpstreamConnection(socket, _pool, _tuning.MaxBufferedBytes, _tuning.InlineScheduling);
        connection.Start();
        return new ConnectResult(connection, RelayError.None, null);
    }

    /// <summary>Wraps a socket that is already connected (an agent's takeover connection) as an upstream leg.</summary>
    internal ConnectionContext Adopt(Socket socket)
    {
        var connection = new UpstreamConnection(socket, _pool, _tuning.MaxBufferedBytes, _tuning.InlineScheduling);
        connection.Start();
        return connection;
    }

    public void Dispose() => _pool.Dispose();
}

public readonly record struct ConnectResult(ConnectionContext? Connection, RelayError Error, string? Detail);
