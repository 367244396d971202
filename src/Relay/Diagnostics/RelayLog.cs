using System.Net;

namespace Relay.Diagnostics;

/// <summary>Every log event of the relay, with pinned ids (Relay owns 1000-1999).</summary>
internal static partial class RelayLog
{
    [LoggerMessage(1000, LogLevel.Information, "Relay started: {RouteCount} route(s), {ClusterCount} cluster(s), admin on {Admin}", EventName = "RelayStarted")]
    public static partial void RelayStarted(ILogger logger, int routeCount, int clusterCount, string admin);

    [LoggerMessage(1001, LogLevel.Information, "Route {Route} listening on {Listen} -> cluster {Cluster}", EventName = "RouteListening")]
    public static partial void RouteListening(ILogger logger, string route, EndPoint listen, string cluster);

    [LoggerMessage(1002, LogLevel.Information, "Route {Route} stopped listening on {Listen}", EventName = "RouteStopped")]
    public static partial void RouteStopped(ILogger logger, string route, EndPoint listen);

    [LoggerMessage(1003, LogLevel.Critical, "Route {Route} cannot listen on {Listen}: {Reason}", EventName = "ListenFailed")]
    public static partial void ListenFailed(ILogger logger, string route, EndPoint listen, string reason);

    [LoggerMessage(1010, LogLevel.Debug, "Session {SessionId} on {Route} from {Client} -> {Endpoint} ({Upstream})", EventName = "SessionStarted")]
    public static partial void SessionStarted(ILogger logger, long sessionId, string route, EndPoint? client, string endpoint, EndPoint? upstream);

    [LoggerMessage(1011, LogLevel.Debug, "Session {SessionId} ended: {Reason}; {BytesIn} bytes in, {BytesOut} bytes out, {DurationMs:F1} ms", EventName = "SessionEnded")]
    public static partial void SessionEnded(ILogger logger, long sessionId, RelayError reason, long bytesIn, long bytesOut, double durationMs);

    [LoggerMessage(1012, LogLevel.Warning, "Session {SessionId} on {Route} ended by {Reason} on endpoint {Endpoint}: {Detail}", EventName = "SessionUpstreamError")]
    public static partial void SessionUpstreamError(ILogger logger, long sessionId, string route, RelayError reason, string endpoint, string? detail);

    [LoggerMessage(1013, LogLevel.Debug, "Connection from {Client} on {Route} rejected: {Reason}", EventName = "SessionRejected")]
    public static partial void SessionRejected(ILogger logger, EndPoint? client, string route, RelayError reason);

    [LoggerMessage(1014, LogLevel.Warning, "Connect to endpoint {Endpoint} ({Address}) for route {Route} failed: {Reason} {Detail}", EventName = "UpstreamConnectFailed")]
    public static partial void UpstreamConnectFailed(ILogger logger, string endpoint, string address, string route, RelayError reason, string detail);

    [LoggerMessage(1015, LogLevel.Warning, "Route {Route}: no endpoint of cluster {Cluster} could take the session from {Client} after {Attempts} attempt(s)", EventName = "NoEndpointAvailable")]
    public static partial void NoEndpointAvailable(ILogger logger, string route, string cluster, EndPoint? client, int attempts);

    [LoggerMessage(1016, LogLevel.Information, "Session {SessionId} closed after {IdleSeconds:F1} s idle", EventName = "SessionIdle")]
    public static partial void SessionIdle(ILogger logger, long sessionId, double idleSeconds);

    [LoggerMessage(1020, LogLevel.Warning, "Endpoint {Endpoint} of cluster {Cluster} is now {Health}: {Reason}", EventName = "EndpointHealthChanged")]
    public static partial void EndpointHealthChanged(ILogger logger, string endpoint, string cluster, string health, string reason);

    [LoggerMessage(1021, LogLevel.Warning, "Endpoint {Endpoint} of cluster {Cluster} ejected for {Seconds:F0} s after {Failures} consecutive failures", EventName = "EndpointEjected")]
    public static partial void EndpointEjected(ILogger logger, string endpoint, string cluster, double seconds, int failures);

    [LoggerMessage(1030, LogLevel.Information, "Configuration reloaded from {Path}: {RouteCount} route(s), {ClusterCount} cluster(s)", EventName = "ConfigReloaded")]
    public static partial void ConfigReloaded(ILogger logger, string path, int routeCount, int clusterCount);

    [LoggerMessage(1031, LogLevel.Error, "Configuration reload from {Path} rejected, keeping the last good configuration:{Errors}", EventName = "ConfigReloadRejected")]
    public static partial void ConfigReloadRejected(ILogger logger, string path, string errors);

    [LoggerMessage(1032, LogLevel.Warning, "Configuration reload from {Path}: {Note}", EventName = "ConfigReloadNote")]
    public static partial void ConfigReloadNote(ILogger logger, string path, string note);

    [LoggerMessage(1040, LogLevel.Information, "Shutting down: stopped accepting; waiting up to {Seconds:F0} s for {Sessions} session(s)", EventName = "DrainStarted")]
    public static partial void DrainStarted(ILogger logger, double seconds, int sessions);

    [LoggerMessage(1041, LogLevel.Information, "Drain finished: {Remaining} session(s) aborted at the drain timeout", EventName = "DrainFinished")]
    public static partial void DrainFinished(ILogger logger, int remaining);

    [LoggerMessage(1050, LogLevel.Warning, "Admin request {Method} {Path} from {Remote} refused: {Reason}", EventName = "AdminUnauthorized")]
    public static partial void AdminUnauthorized(ILogger logger, string method, string path, string? remote, string reason);

    [LoggerMessage(1051, LogLevel.Warning, "No admin token configured; generated one and wrote it to {Path} (mode 0600)", EventName = "AdminTokenGenerated")]
    public static partial void AdminTokenGenerated(ILogger logger, string path);

    [LoggerMessage(1060, LogLevel.Warning, "Pooled 64 KiB I/O blocks unavailable on this runtime ({Reason}); using Kestrel's default pool", EventName = "MemoryPoolFallback")]
    public static partial void MemoryPoolFallback(ILogger logger, string reason);

    [LoggerMessage(1061, LogLevel.Information, "L4 routes use {Transport}", EventName = "L4Transport")]
    public static partial void L4Transport(ILogger logger, string transport);
}
