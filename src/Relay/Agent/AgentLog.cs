using System.Net;

namespace Relay.Agent;

/// <summary>The agent's log events (ids 1200-1299).</summary>
internal static partial class AgentLog
{
    [LoggerMessage(1200, LogLevel.Information, "Agent {AgentId} listening for relays on {Control}, backend {Backend}", EventName = "AgentStarted")]
    public static partial void Started(ILogger logger, string agentId, IPEndPoint control, string backend);

    [LoggerMessage(1201, LogLevel.Information, "Agent stopped", EventName = "AgentStopped")]
    public static partial void Stopped(ILogger logger);

    [LoggerMessage(1202, LogLevel.Critical, "The control accept loop failed; the agent takes no more relay connections", EventName = "AcceptLoopFailed")]
    public static partial void AcceptLoopFailed(ILogger logger, Exception exception);

    [LoggerMessage(1203, LogLevel.Warning, "Control handshake from {Remote} failed: {Reason}", EventName = "HandshakeFailed")]
    public static partial void HandshakeFailed(ILogger logger, EndPoint? remote, string reason);

    [LoggerMessage(1204, LogLevel.Warning, "Refused a control connection from {Remote}: {Reason}", EventName = "HelloRefused")]
    public static partial void HelloRefused(ILogger logger, EndPoint? remote, string reason);

    [LoggerMessage(1210, LogLevel.Information, "Relay {RelayId} connected from {Remote}: echo channel over {PathCount} path(s)", EventName = "EchoConnected")]
    public static partial void EchoConnected(ILogger logger, long relayId, EndPoint? remote, int pathCount);

    [LoggerMessage(1211, LogLevel.Information, "Relay {RelayId} echo connection ended ({Reason}); dropped {Sessions} shadow session(s)", EventName = "EchoDisconnected")]
    public static partial void EchoDisconnected(ILogger logger, long relayId, string reason, int sessions);

    [LoggerMessage(1212, LogLevel.Debug, "Relay {RelayId}: dropped a malformed or unknown echo frame (type {Type}, {Length} bytes): {Reason}", EventName = "FrameDropped")]
    public static partial void FrameDropped(ILogger logger, long relayId, byte type, int length, string reason);

    [LoggerMessage(1213, LogLevel.Error, "Relay {RelayId}: an echo loop failed", EventName = "EchoLoopFailed")]
    public static partial void EchoLoopFailed(ILogger logger, long relayId, Exception exception);

    [LoggerMessage(1220, LogLevel.Debug, "Shadow {SessionId} of relay {RelayId} opened ({Codec})", EventName = "ShadowOpened")]
    public static partial void ShadowOpened(ILogger logger, long sessionId, long relayId, string codec);

    [LoggerMessage(1221, LogLevel.Warning, "Shadow {SessionId} of relay {RelayId} failed: {Reason}", EventName = "ShadowFailed")]
    public static partial void ShadowFailed(ILogger logger, long sessionId, long relayId, string reason);

    [LoggerMessage(1222, LogLevel.Debug, "Shadow {SessionId} of relay {RelayId} closed", EventName = "ShadowClosed")]
    public static partial void ShadowClosed(ILogger logger, long sessionId, long relayId);

    [LoggerMessage(1223, LogLevel.Warning, "Shadow {SessionId} of relay {RelayId} diverged: the backend's output is malformed at offset {Offset}: {Problem}", EventName = "ShadowOutputMalformed")]
    public static partial void OutputMalformed(ILogger logger, long sessionId, long relayId, long offset, string problem);

    [LoggerMessage(1224, LogLevel.Information, "Shadow {SessionId} of relay {RelayId} diverged at message {Index}", EventName = "ShadowDiverged")]
    public static partial void Diverged(ILogger logger, long sessionId, long relayId, long index);

    [LoggerMessage(1230, LogLevel.Information, "Took over session {SessionId} of relay {RelayId}: delivered {Delivered}, cut at output byte {Cut}, {TailBytes} tail byte(s), in {ElapsedMs:F1} ms", EventName = "TakeoverDone")]
    public static partial void TakeoverDone(ILogger logger, long sessionId, long relayId, long delivered, long cut, long tailBytes, double elapsedMs);

    [LoggerMessage(1231, LogLevel.Warning, "Refused the takeover of session {SessionId} of relay {RelayId}: {Reason}", EventName = "TakeoverRefused")]
    public static partial void TakeoverRefused(ILogger logger, long sessionId, long relayId, string reason);

    [LoggerMessage(1232, LogLevel.Information, "Spliced session {SessionId} of relay {RelayId} ended: {ClientBytes} byte(s) to the backend, {BackendBytes} byte(s) back", EventName = "SplicedSessionEnded")]
    public static partial void SplicedEnded(ILogger logger, long sessionId, long relayId, long clientBytes, long backendBytes);

    [LoggerMessage(1233, LogLevel.Warning, "Takeover connection from {Remote} failed", EventName = "TakeoverConnectionFailed")]
    public static partial void TakeoverConnectionFailed(ILogger logger, EndPoint? remote, Exception exception);

    [LoggerMessage(1234, LogLevel.Debug, "Compiled {Methods} method(s) of the shadow and takeover path ahead of use in {Milliseconds:F0} ms", EventName = "TakeoverPathCompiled")]
    public static partial void TakeoverPathCompiled(ILogger logger, int methods, double milliseconds);
}
