using Relay.Predict.Planning;

namespace Relay.Prediction;

/// <summary>Log events of the prediction service (ids 1400-1449).</summary>
internal static partial class PredictionLog
{
    [LoggerMessage(1400, LogLevel.Information, "Prediction on: {Clusters} cluster(s), signals and liveness every {IntervalMs} ms, full pass every {EvaluateMs} ms, horizon {HorizonSeconds} s, threshold {Threshold}; health-based evacuation is off", EventName = "PredictionStarted")]
    public static partial void Started(ILogger logger, int clusters, double intervalMs, double evaluateMs, double horizonSeconds, double threshold);

    [LoggerMessage(1401, LogLevel.Warning, "Endpoint {Endpoint} of cluster {Cluster}: evacuate ({Score})", EventName = "EndpointEvacuating")]
    public static partial void Evacuating(ILogger logger, string endpoint, string cluster, string score);

    [LoggerMessage(1402, LogLevel.Information, "Endpoint {Endpoint} of cluster {Cluster}: serves again ({Score})", EventName = "EndpointRestored")]
    public static partial void Restored(ILogger logger, string endpoint, string cluster, string score);

    [LoggerMessage(1403, LogLevel.Warning, "Cluster {Cluster}: every endpoint is predicted to fail; all stay available (fail open)", EventName = "PredictionFailOpen")]
    public static partial void FailOpen(ILogger logger, string cluster);

    [LoggerMessage(1404, LogLevel.Debug, "Cluster {Cluster}: evaluation {Status}; decisions held for this pass", EventName = "PredictionEvaluationHeld")]
    public static partial void EvaluationHeld(ILogger logger, string cluster, Relay.Predict.Stability.ScoreStatus status);

    [LoggerMessage(1410, LogLevel.Information, "Session {SessionId}: moving from {From} to {To} ({Reason}, cause {Cause}, expected loss {ExpectedLoss:F3}, deadline in {DeadlineSeconds:F1} s)", EventName = "MigrationRecommended")]
    public static partial void Recommended(ILogger logger, long sessionId, string from, string to, MigrationReason reason, string cause, double expectedLoss, double deadlineSeconds);

    [LoggerMessage(1411, LogLevel.Information, "Session {SessionId}: moved from {From} to {To} on prediction in {BlackoutMs:F2} ms", EventName = "MigrationDone")]
    public static partial void Moved(ILogger logger, long sessionId, string from, string to, double blackoutMs);

    [LoggerMessage(1412, LogLevel.Warning, "Session {SessionId}: could not move it off {From}: {Reason}; retrying after {RetrySeconds} s", EventName = "MigrationFailed")]
    public static partial void MoveFailed(ILogger logger, long sessionId, string from, string reason, double retrySeconds);

    [LoggerMessage(1413, LogLevel.Debug, "Session {SessionId}: recommendation to leave {From} skipped: {Reason}", EventName = "MigrationSkipped")]
    public static partial void Skipped(ILogger logger, long sessionId, string from, string reason);

    [LoggerMessage(1420, LogLevel.Information, "Cluster {Cluster} changed its endpoints; its predictor starts again without history", EventName = "PredictionClusterRebuilt")]
    public static partial void ClusterRebuilt(ILogger logger, string cluster);

    [LoggerMessage(1440, LogLevel.Error, "Prediction pass failed; the next one runs on schedule", EventName = "PredictionPassFailed")]
    public static partial void PassFailed(ILogger logger, Exception exception);
}
