using Relay.Predict.Planning;
using Relay.Predict.Stability;

namespace Relay.Prediction;

/// <summary>One recommendation the service acted on and what became of it. Mutated under the service's lock.</summary>
internal sealed class MigrationRecord
{
    public long Id { get; init; }

    public DateTimeOffset At { get; init; }

    public long SessionId { get; init; }

    public required string Cluster { get; init; }

    public required string From { get; init; }

    /// <summary>The planner's target (the move goes to a Ready shadow, which may be elsewhere).</summary>
    public string? Recommended { get; init; }

    public MigrationReason Reason { get; init; }

    public StabilityReasons Cause { get; init; }

    public double Priority { get; init; }

    public double ExpectedLoss { get; init; }

    /// <summary>Seconds from the recommendation to its deadline.</summary>
    public double DeadlineSeconds { get; init; }

    /// <summary>The source endpoint's score when the recommendation was made.</summary>
    public double Score { get; init; }

    public string? Target { get; set; }

    /// <summary>migrating, spliced, failed, skipped, or gone (the session ended first).</summary>
    public string Action { get; set; } = "recommended";

    public string? Detail { get; set; }

    public double? BlackoutMs { get; set; }

    public DateTimeOffset? FinishedAt { get; set; }

    public RecommendationView View() => new(
        Id,
        At,
        SessionId,
        Cluster,
        From,
        Recommended,
        Target,
        PredictionService.Label(Reason),
        Cause == StabilityReasons.None ? null : Cause.ToString(),
        Priority,
        ExpectedLoss,
        DeadlineSeconds,
        Score,
        Action,
        Detail,
        BlackoutMs,
        FinishedAt);
}

/// <summary>Running totals of what the service did with the planner's recommendations.</summary>
internal sealed class PredictionCounters
{
    public long Recommended { get; set; }

    public long Started { get; set; }

    public long Spliced { get; set; }

    public long Failed { get; set; }

    public long Skipped { get; set; }

    /// <summary>Not started because echo.maxConcurrentMigrations were in flight (recommended again next pass).</summary>
    public long Deferred { get; set; }

    /// <summary>Repeats for a session already moving or waiting out its retry delay.</summary>
    public long Suppressed { get; set; }

    public long SkippedOptimisation { get; set; }

    public CountersView Snapshot() => new(Recommended, Started, Spliced, Failed, Skipped, Deferred, Suppressed, SkippedOptimisation);
}

internal sealed record CountersView(long Recommended, long Started, long Spliced, long Failed, long Skipped, long Deferred, long Suppressed, long SkippedOptimisation);

internal sealed record RecommendationView(
    long Id,
    DateTimeOffset At,
    long Session,
    string Cluster,
    string From,
    string? Recommended,
    string? To,
    string Reason,
    string? Cause,
    double Priority,
    double ExpectedLoss,
    double DeadlineSeconds,
    double Score,
    string Action,
    string? Detail,
    double? BlackoutMs,
    DateTimeOffset? FinishedAt);

internal sealed record RecommendationsView(bool Enabled, CountersView Counters, int InFlight, int MaxConcurrentMigrations, Dictionary<string, long> RateLimitedByCluster, List<RecommendationView> Recent);

internal sealed record ScoreComponents(double? Phi, double? Liveness, double? Latency, double? Errors, double? Load, double? Host, double? Notice, double? Outlier, double? Pauses);

internal sealed record ScoreForecasts(double? LatencyMs, double? ErrorRate, double? Load, double? PauseMs, double? NoticeSecondsLeft, double? SecondsNeeded, bool LatencyShift);

internal sealed record EndpointScoreView(
    double? Score,
    double? Probability,
    string Status,
    string Decision,
    bool FailOpen,
    List<string> Reasons,
    string? Dominant,
    ScoreComponents Components,
    ScoreForecasts Forecasts,
    string Summary);

internal sealed record ScalingView(
    string Route,
    string Cluster,
    int CurrentEndpoints,
    int DesiredEndpoints,
    string Direction,
    string Basis,
    double ObservedConcurrency,
    double? ForecastConcurrency,
    double? ForecastUpper,
    double? ArrivalsForecastPerSecond,
    double LeadTimeSeconds);
