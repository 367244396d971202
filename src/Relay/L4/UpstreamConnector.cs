using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Relay.Configuration;

namespace Relay.L4;

/// <summary>
/// Opens upstream legs as Kestrel socket connections, so both legs of a session are
/// <see cref="ConnectionContext"/>s with the same pipes and the same memory pool.
/// </summary>
public sealed class UpstreamConnector : IDisposable
{
    private readonly SocketConnectionContextFactory _factory;

    internal UpstreamConnector(TransportTuning tuning, BlockMemoryPoolFactory? poolFactory, ILogger logger)
    {
        var options = new SocketConnectionFactoryOptions
        {
            MaxReadBufferSize = tuning.MaxBufferedBytes,
            MaxWriteBufferSize = tuning.MaxBufferedBytes,
            UnsafePreferInlineScheduling = tuning.InlineScheduling,
            WaitForDataBeforeAllocatingBuffer = true,
        };
        poolFactory?.TryAttach(options, out _);
        _factory = new SocketConnectionContextFactory(options, logger);
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

        return new ConnectResult(_factory.Create(socket), RelayError.None, null);
    }

    public void Dispose() => _factory.Dispose();
}

public readonly record struct ConnectResult(ConnectionContext? Connection, RelayError Error, string? Detail);
