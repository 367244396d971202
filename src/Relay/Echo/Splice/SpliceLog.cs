using System.Net;

namespace Relay.Echo.Splice;

/// <summary>Log events of echo and splice on the relay side (ids 1300-1349).</summary>
internal static partial class SpliceLog
{
    [LoggerMessage(1300, LogLevel.Information, "Agent {Endpoint} at {Control} connected: agent id {AgentId}, {Paths} path(s)", EventName = "AgentConnected")]
    public static partial void AgentConnected(ILogger logger, string endpoint, IPEndPoint control, string agentId, int paths);

    [LoggerMessage(1301, LogLevel.Warning, "Agent {Endpoint} at {Control} is unreachable: {Reason}; retrying in {RetryMs} ms", EventName = "AgentUnreachable")]
    public static partial void AgentUnreachable(ILogger logger, string endpoint, IPEndPoint control, string reason, double retryMs);

    [LoggerMessage(1302, LogLevel.Warning, "Agent {Endpoint} disconnected: {Reason}; its {Shadows} shadow(s) are Lost", EventName = "AgentDisconnected")]
    public static partial void AgentDisconnected(ILogger logger, string endpoint, string reason, int shadows);

    [LoggerMessage(1303, LogLevel.Debug, "Dropped a malformed or unexpected echo frame from agent {Endpoint} (type {Type}, {Length} bytes)", EventName = "EchoFrameDropped")]
    public static partial void FrameDropped(ILogger logger, string endpoint, int type, int length);

    [LoggerMessage(1310, LogLevel.Information, "Session {SessionId} shadow on {Endpoint}: {From} -> {To} ({Reason})", EventName = "ShadowStateChanged")]
    public static partial void ShadowStateChanged(ILogger logger, long sessionId, string endpoint, ShadowState from, ShadowState to, string reason);

    [LoggerMessage(1311, LogLevel.Warning, "Session {SessionId}: agent {Endpoint} could not keep a shadow: {Reason}", EventName = "ShadowFailed")]
    public static partial void ShadowFailed(ILogger logger, long sessionId, string endpoint, string reason);

    [LoggerMessage(1312, LogLevel.Information, "Session {SessionId}: no new shadow: {Reason}", EventName = "NoNewShadow")]
    public static partial void NoNewShadow(ILogger logger, long sessionId, string reason);

    [LoggerMessage(1320, LogLevel.Information, "Session {SessionId} spliced from {From} to {To} ({Trigger}) in {BlackoutMs:F2} ms: in {InOffset} bytes, delivered {Delivered}, tail {TailBytes} bytes", EventName = "Spliced")]
    public static partial void Spliced(ILogger logger, long sessionId, string from, string to, SpliceTrigger trigger, double blackoutMs, long inOffset, long delivered, long tailBytes);

    [LoggerMessage(1321, LogLevel.Warning, "Session {SessionId}: takeover by {Endpoint} failed: {Reason}", EventName = "TakeoverFailed")]
    public static partial void TakeoverFailed(ILogger logger, long sessionId, string endpoint, string reason);

    [LoggerMessage(1322, LogLevel.Warning, "Session {SessionId}: splice ({Trigger}) rolled back to {Endpoint} after {BlackoutMs:F2} ms: {Reason}", EventName = "SpliceRolledBack")]
    public static partial void RolledBack(ILogger logger, long sessionId, string endpoint, SpliceTrigger trigger, double blackoutMs, string reason);

    [LoggerMessage(1323, LogLevel.Error, "Session {SessionId} lost: primary {Endpoint} failed ({Failure}) and no shadow could take over: {Reason}", EventName = "SessionLost")]
    public static partial void SessionLost(ILogger logger, long sessionId, string endpoint, RelayError failure, string reason);

    [LoggerMessage(1324, LogLevel.Information, "Endpoint {Endpoint}: moving {Sessions} echoed session(s) away ({Trigger})", EventName = "Evacuating")]
    public static partial void Evacuating(ILogger logger, string endpoint, int sessions, SpliceTrigger trigger);

    [LoggerMessage(1325, LogLevel.Information, "Endpoint {Endpoint}: {Moved} session(s) moved, {Failed} could not move ({Trigger})", EventName = "Evacuated")]
    public static partial void Evacuated(ILogger logger, string endpoint, int moved, int failed, SpliceTrigger trigger);

    [LoggerMessage(1326, LogLevel.Warning, "Endpoint {Endpoint} posted an interruption notice: it goes away at {At:O}", EventName = "InterruptionNotice")]
    public static partial void InterruptionNotice(ILogger logger, string endpoint, DateTimeOffset at);

    [LoggerMessage(1327, LogLevel.Debug, "Session {SessionId}: endpoint {Endpoint} did not prepare the takeover ({Reason}); the splice goes on without it", EventName = "PrepareDeclined")]
    public static partial void PrepareDeclined(ILogger logger, long sessionId, string endpoint, string reason);

    [LoggerMessage(1329, LogLevel.Information, "Session {SessionId}: primary {Endpoint} closed the connection, and that is the session's end, not a failure: {Reason}", EventName = "PrimaryClosedItsSession")]
    public static partial void PrimaryClosedItsSession(ILogger logger, long sessionId, string endpoint, string reason);

    [LoggerMessage(1328, LogLevel.Debug, "Compiled {Methods} method(s) of the splice path ahead of the first splice in {Milliseconds:F0} ms", EventName = "SplicePathCompiled")]
    public static partial void SplicePathCompiled(ILogger logger, int methods, double milliseconds);
}
