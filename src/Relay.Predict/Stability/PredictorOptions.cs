namespace Relay.Predict.Stability;

/// <summary>Named defaults for <see cref="PredictorOptions"/>; tuned on the tuning seeds of the
/// evaluation harness (perf/Relay.PredictEval, docs/prediction.md).</summary>
public static class PredictorDefaults
{
    public const double HorizonSeconds = 30.0;
    public const double BucketSeconds = 1.0;
    public const double EvacuateBelow = 0.5;
    public const double RestoreAbove = 0.8;
    public const double SoftDwellSeconds = 2.0;
    public const double RestoreDwellSeconds = 10.0;
    public const double FlapWindowSeconds = 300.0;
    public const double MaxRestoreDwellSeconds = 600.0;
    public const double MaxEvacuatedShare = 0.34;
    public const double OutlierRatio = 3.0;
    public const double OutlierMinExcessSeconds = 0.05;
    public const double PauseLimitSeconds = 1.0;
    public const double ClockJumpSeconds = 5.0;
    public const double NoHistoryScore = 0.9;
}

/// <summary>Per-endpoint limits the forecasts are held against.</summary>
public sealed record EndpointLimits
{
    /// <summary>Mean response latency beyond which the endpoint counts as failing.
    /// <remarks>Defaults to 250 ms.</remarks></summary>
    public double LatencySloSeconds { get; init; } = 0.25;

    /// <summary><remarks>Defaults to 0.2 (20% of requests failing).</remarks></summary>
    public double ErrorRateLimit { get; init; } = 0.2;

    /// <summary>Load (sessions or requests in flight, whatever the caller reports) the endpoint
    /// can carry. <remarks>Defaults to 100.</remarks></summary>
    public double Capacity { get; init; } = 100.0;

    /// <summary><remarks>Defaults to 0.95.</remarks></summary>
    public double CpuLimit { get; init; } = 0.95;

    /// <summary><remarks>Defaults to 0.95.</remarks></summary>
    public double MemoryLimit { get; init; } = 0.95;

    /// <summary>Seconds needed to move one unit of load (one session) away, and how many move
    /// at once; time needed = ceil(load / parallelism) * seconds.
    /// <remarks>Defaults to 0.5 s and 16.</remarks></summary>
    public double SecondsPerMove { get; init; } = 0.5;

    public int MoveParallelism { get; init; } = 16;

    public void Validate(string argumentName)
    {
        if (!(LatencySloSeconds > 0) || !(ErrorRateLimit > 0 && ErrorRateLimit <= 1) || !(Capacity > 0)
            || !(CpuLimit > 0 && CpuLimit <= 1) || !(MemoryLimit > 0 && MemoryLimit <= 1) || !(SecondsPerMove >= 0) || MoveParallelism < 1)
        {
            throw new ArgumentException("EndpointLimits: SLO, capacity positive; rates and limits in (0,1]; parallelism at least 1.", argumentName);
        }
    }
}

/// <summary>Options of the stability scorer and its guards.</summary>
public sealed record PredictorOptions
{
    /// <summary>The horizon the score's probability refers to.
    /// <remarks>Defaults to 30 s.</remarks></summary>
    public double HorizonSeconds { get; init; } = PredictorDefaults.HorizonSeconds;

    /// <summary>Signals are aggregated per bucket before the trend models see them.
    /// <remarks>Defaults to 1 s.</remarks></summary>
    public double BucketSeconds { get; init; } = PredictorDefaults.BucketSeconds;

    public PhiAccrualOptions Phi { get; init; } = new();

    /// <summary>Holt smoothing for latency, error rate, load and pause trends.</summary>
    public double TrendAlpha { get; init; } = 0.3;

    public double TrendBeta { get; init; } = 0.05;

    /// <summary>Score below which an endpoint is evacuated (after the dwell for soft reasons).</summary>
    public double EvacuateBelow { get; init; } = PredictorDefaults.EvacuateBelow;

    /// <summary>Score above which an evacuated endpoint may take sessions again (hysteresis).</summary>
    public double RestoreAbove { get; init; } = PredictorDefaults.RestoreAbove;

    public double SoftDwellSeconds { get; init; } = PredictorDefaults.SoftDwellSeconds;

    public double RestoreDwellSeconds { get; init; } = PredictorDefaults.RestoreDwellSeconds;

    /// <summary>An evacuation within this long of a restore counts as a flap and doubles the
    /// restore dwell, up to <see cref="MaxRestoreDwellSeconds"/>.</summary>
    public double FlapWindowSeconds { get; init; } = PredictorDefaults.FlapWindowSeconds;

    public double MaxRestoreDwellSeconds { get; init; } = PredictorDefaults.MaxRestoreDwellSeconds;

    /// <summary>Largest share of a cluster evacuated at once for soft reasons.</summary>
    public double MaxEvacuatedShare { get; init; } = PredictorDefaults.MaxEvacuatedShare;

    /// <summary>Peer-relative outlier: latency above median × ratio and median + excess.</summary>
    public double OutlierRatio { get; init; } = PredictorDefaults.OutlierRatio;

    public double OutlierMinExcessSeconds { get; init; } = PredictorDefaults.OutlierMinExcessSeconds;

    /// <summary>A heartbeat gap this much longer than the usual interval counts as an interruption (growing-pause forecast).</summary>
    public double PauseLimitSeconds { get; init; } = PredictorDefaults.PauseLimitSeconds;

    /// <summary>A gap between two evaluations longer than this is a clock jump.</summary>
    public double ClockJumpSeconds { get; init; } = PredictorDefaults.ClockJumpSeconds;

    /// <summary>Score reported for an endpoint nothing has been heard from yet.</summary>
    public double NoHistoryScore { get; init; } = PredictorDefaults.NoHistoryScore;

    /// <summary>Relay CPU above which soft migrations are suppressed (self-health gate).</summary>
    public double SelfCpuLimit { get; init; } = 0.9;

    /// <summary>Relay scheduling lag above which soft migrations are suppressed.</summary>
    public double SelfLagLimitSeconds { get; init; } = 0.2;

    public void Validate(string argumentName)
    {
        Phi.Validate(argumentName);
        if (!(HorizonSeconds > 0) || !(BucketSeconds > 0) || !(TrendAlpha > 0 && TrendAlpha <= 1) || !(TrendBeta >= 0 && TrendBeta <= 1)
            || !(EvacuateBelow > 0 && EvacuateBelow < RestoreAbove && RestoreAbove <= 1) || !(SoftDwellSeconds >= 0) || !(RestoreDwellSeconds >= 0)
            || !(MaxEvacuatedShare > 0 && MaxEvacuatedShare <= 1) || !(OutlierRatio > 1) || !(PauseLimitSeconds > 0) || !(ClockJumpSeconds > BucketSeconds))
        {
            throw new ArgumentException("PredictorOptions out of range (see the remarks on each property).", argumentName);
        }
    }
}
