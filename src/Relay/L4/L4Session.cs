using System.Net;
using Microsoft.AspNetCore.Connections;
using Relay.Clusters;

namespace Relay.L4;

/// <summary>
/// One client connection and its upstream leg. Keeps exact byte positions of both streams:
/// <see cref="BytesIn"/> counts client bytes read (DESIGN.md's inOffset) and <see cref="BytesOut"/>
/// upstream bytes written to the client (delivered). Each counter has one writer, its pump.
/// </summary>
public sealed class L4Session
{
    private readonly object _reportLock = new();
    private long _bytesIn;
    private long _bytesOut;
    private long _bytesInReported;
    private long _bytesOutReported;
    private long _lastActivityTimestamp;
    private int _endReason;

    public L4Session(long id, string routeName, ConnectionContext client, TimeProvider timeProvider)
    {
        Id = id;
        RouteName = routeName;
        Client = client;
        ClientAddress = client.RemoteEndPoint;
        TimeProvider = timeProvider;
        StartedAt = timeProvider.GetUtcNow();
        StartTimestamp = timeProvider.GetTimestamp();
        _lastActivityTimestamp = StartTimestamp;
    }

    public long Id { get; }

    public string RouteName { get; }

    public ConnectionContext Client { get; }

    public EndPoint? ClientAddress { get; }

    public TimeProvider TimeProvider { get; }

    public DateTimeOffset StartedAt { get; }

    public long StartTimestamp { get; }

    public ConnectionContext? Upstream { get; internal set; }

    public EndpointState? Endpoint { get; internal set; }

    public long BytesIn => Volatile.Read(ref _bytesIn);

    public long BytesOut => Volatile.Read(ref _bytesOut);

    public long LastActivityTimestamp => Volatile.Read(ref _lastActivityTimestamp);

    public RelayError EndReason => (RelayError)Volatile.Read(ref _endReason);

    public string? EndDetail { get; private set; }

    internal void AddIn(long count, long timestamp)
    {
        Volatile.Write(ref _bytesIn, _bytesIn + count);
        Volatile.Write(ref _lastActivityTimestamp, timestamp);
    }

    internal void AddOut(long count, long timestamp)
    {
        Volatile.Write(ref _bytesOut, _bytesOut + count);
        Volatile.Write(ref _lastActivityTimestamp, timestamp);
    }

    /// <summary>Records the first reason the session ends; later ones are consequences (Pipelines.Sockets.Unofficial PipeShutdownKind).</summary>
    internal bool TrySetEndReason(RelayError reason, string? detail = null)
    {
        if (Interlocked.CompareExchange(ref _endReason, (int)reason, (int)RelayError.None) == (int)RelayError.None)
        {
            EndDetail = detail;
            return true;
        }

        return false;
    }

    /// <summary>Ends the session from outside its pumps (idle timeout, drain, admin).</summary>
    public void Abort(RelayError reason, string? detail = null)
    {
        TrySetEndReason(reason, detail);
        var exception = new ConnectionAbortedException(detail ?? reason.ToString());
        Client.Abort(exception);
        Upstream?.Abort(exception);
    }

    /// <summary>Bytes not yet added to the route's metric totals; each byte is reported once.</summary>
    internal (long In, long Out) TakeUnreportedBytes()
    {
        lock (_reportLock)
        {
            var bytesIn = BytesIn;
            var bytesOut = BytesOut;
            var result = (bytesIn - _bytesInReported, bytesOut - _bytesOutReported);
            _bytesInReported = bytesIn;
            _bytesOutReported = bytesOut;
            return result;
        }
    }
}
