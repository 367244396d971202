using System.Net;

namespace Relay.L7;

/// <summary>L7 log events; ids 1100-1199 are the L7 relay's (issue 6).</summary>
internal static partial class L7Log
{
    [LoggerMessage(1100, LogLevel.Information, "HTTP route {Route} listening on {Listen} -> cluster {Cluster}", EventName = "HttpRouteListening")]
    public static partial void RouteListening(ILogger logger, string route, EndPoint listen, string cluster);

    [LoggerMessage(1101, LogLevel.Information, "HTTP route {Route} stopped listening on {Listen}", EventName = "HttpRouteStopped")]
    public static partial void RouteStopped(ILogger logger, string route, EndPoint listen);

    [LoggerMessage(1102, LogLevel.Critical, "HTTP route {Route} cannot listen on {Listen}: {Reason}", EventName = "HttpListenFailed")]
    public static partial void ListenFailed(ILogger logger, string route, EndPoint listen, string reason);

    [LoggerMessage(1110, LogLevel.Information, "Route {Route}: attempt {Attempt} of {Method} {Path} on endpoint {Endpoint} failed ({Error}: {Detail}); retrying", EventName = "HttpRetry")]
    public static partial void Retry(ILogger logger, string route, int attempt, string method, string path, string endpoint, string error, string detail);

    [LoggerMessage(1111, LogLevel.Warning, "Route {Route}: {Method} {Path} failed on endpoint {Endpoint} and was not retried ({Reason}): {Detail}", EventName = "HttpRequestFailed")]
    public static partial void RequestFailed(ILogger logger, string route, string method, string path, string? endpoint, string reason, string detail);

    [LoggerMessage(1112, LogLevel.Warning, "Route {Route}: no endpoint of cluster {Cluster} is available for {Method} {Path}", EventName = "HttpNoEndpoint")]
    public static partial void NoEndpoint(ILogger logger, string route, string cluster, string method, string path);

    [LoggerMessage(1113, LogLevel.Debug, "Route {Route}: {Method} {Path} ended by {Error} after the response started on {Endpoint}: {Detail}", EventName = "HttpResponseAborted")]
    public static partial void ResponseAborted(ILogger logger, string route, string method, string path, string endpoint, string error, string detail);

    [LoggerMessage(1120, LogLevel.Information, "Route {Route}: session {Session} moved from endpoint {From} to {To} ({Kind}) because {Reason}", EventName = "HttpAffinityMoved")]
    public static partial void AffinityMoved(ILogger logger, string route, string session, string from, string to, string kind, string reason);

    [LoggerMessage(1130, LogLevel.Debug, "Route {Route}: shadow {Shadow} differs from the primary in {Part} for {Method} {Path}", EventName = "HttpShadowMismatch")]
    public static partial void ShadowMismatch(ILogger logger, string route, string shadow, string part, string method, string path);

    [LoggerMessage(1131, LogLevel.Warning, "Route {Route}: shadow {Shadow} is now {State} ({Mismatches} mismatch(es) in the last {Samples} comparison(s))", EventName = "HttpShadowConsistencyChanged")]
    public static partial void ShadowConsistencyChanged(ILogger logger, string route, string shadow, string state, int mismatches, int samples);

    [LoggerMessage(1132, LogLevel.Debug, "Route {Route}: copy for shadow {Shadow} failed: {Detail}", EventName = "HttpShadowError")]
    public static partial void ShadowError(ILogger logger, string route, string shadow, string detail);

    [LoggerMessage(1140, LogLevel.Debug, "Route {Route}: upgraded connection {SessionId} to endpoint {Endpoint} ended; {BytesIn} bytes in, {BytesOut} bytes out", EventName = "HttpUpgradeEnded")]
    public static partial void UpgradeEnded(ILogger logger, string route, long sessionId, string endpoint, long bytesIn, long bytesOut);
}
