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
        var outcome = await TcpConnect.ConnectAsync(address, timeout, cancellationToken).ConfigureAwait(false);
        if (outcome.Socket is { } socket)
        {
            socket.NoDelay = true;
            return new ConnectResult(new UpstreamConnection(socket, _pipeOptions), RelayError.None, null);
        }

        if (outcome.TimedOut)
        {
            return new ConnectResult(null, RelayError.UpstreamConnectTimeout, $"no answer within {DurationParser.Format(timeout)}");
        }

        var error = outcome.Error == SocketError.ConnectionRefused ? RelayError.UpstreamConnectRefused : RelayError.UpstreamConnectFailed;
        return new ConnectResult(null, error, new SocketException((int)outcome.Error).Message);
    }

    /// <summary>Wraps a socket that is already connected (an agent's takeover connection) as an upstream leg.</summary>
    internal ConnectionContext Adopt(Socket socket)
    {
        return new UpstreamConnection(socket, _pipeOptions);
    }

    public void Dispose() => _pool.Dispose();
}

public readonly record struct ConnectResult(ConnectionContext? Connection, RelayError Error, string? Detail);
