using Microsoft.Extensions.Logging;

namespace Relay.Transport.Multipath;

public sealed partial class MultipathChannel
{
    // Event ids 2000-2099: channel. Nothing here logs per packet.
    private static partial class Log
    {
        [LoggerMessage(EventId = 2001, EventName = "PathDead", Level = LogLevel.Warning, Message = "Path {Path} is dead: no probe answer for {SilentMs:F0} ms.")]
        public static partial void PathDead(ILogger logger, int path, double silentMs);

        [LoggerMessage(EventId = 2002, EventName = "PathReadmitted", Level = LogLevel.Information, Message = "Path {Path} is alive again (RTT {RttMs:F2} ms).")]
        public static partial void PathReadmitted(ILogger logger, int path, double rttMs);

        [LoggerMessage(EventId = 2003, EventName = "ProtocolError", Level = LogLevel.Warning, Message = "Authenticated peer sent an invalid block {BlockId}: {Problem}. Closing the channel.")]
        public static partial void ProtocolError(ILogger logger, long blockId, string problem);

        [LoggerMessage(EventId = 2004, EventName = "PeerClosed", Level = LogLevel.Information, Message = "Peer closed the channel (reason {Reason}).")]
        public static partial void PeerClosed(ILogger logger, int reason);

        [LoggerMessage(EventId = 2005, EventName = "ReceiveLoopFailed", Level = LogLevel.Error, Message = "Receive loop of path {Path} failed.")]
        public static partial void ReceiveLoopFailed(ILogger logger, int path, Exception exception);

        [LoggerMessage(EventId = 2006, EventName = "TimerLoopFailed", Level = LogLevel.Error, Message = "Timer loop failed.")]
        public static partial void TimerLoopFailed(ILogger logger, Exception exception);
    }
}
