using Relay.Predict.Forecasting;

namespace Relay.Predict.Stability;

/// <summary>Everything the predictor keeps about one endpoint: bounded, allocated once.</summary>
internal sealed class EndpointState
{
    public const double LatencyMinStdDev = 0.002;
    public const double ErrorMinStdDev = 0.01;
    public const double LoadMinStdDev = 1.0;
    public const double PauseMinStdDev = 0.02;
    public const int LongGapsForPauseTrend = 3;
    public const double LongGapWindowSeconds = 60.0;

    public EndpointState(int zone, EndpointLimits limits, PredictorOptions options)
    {
        Zone = zone;
        Limits = limits;
        Phi = new PhiAccrualDetector(options.Phi);
        Latency = new HoltLinear(options.TrendAlpha, options.TrendBeta, LatencyMinStdDev);
        Errors = new HoltLinear(options.TrendAlpha, options.TrendBeta, ErrorMinStdDev);
        Load = new HoltLinear(options.TrendAlpha, options.TrendBeta, LoadMinStdDev);
        Pauses = new HoltLinear(options.TrendAlpha, options.TrendBeta, PauseMinStdDev);
        GapPeak = new PeakEwma(20.0);
        Cpu = new Ewma(10.0);
        Memory = new Ewma(10.0);
        LatencyChange = new PageHinkley(0.005, 0.5);
        SlowLatency = new Ewma(OutlierTauSeconds);
    }

    /// <summary>Peer comparison uses a slower latency average than the trend so a transient
    /// stall does not make an outlier; a gray failure persists (tuned on the tuning seeds).</summary>
    public const double OutlierTauSeconds = 15.0;

    public Ewma SlowLatency;

    public int Zone;
    public EndpointLimits Limits;
    public readonly PhiAccrualDetector Phi;
    public HoltLinear Latency;
    public HoltLinear Errors;
    public HoltLinear Load;
    public HoltLinear Pauses;
    public PeakEwma GapPeak;
    public Ewma Cpu;
    public Ewma Memory;
    public PageHinkley LatencyChange;
    public bool LatencyChanged;

    public bool HasHistory;
    public double BucketStart = double.NaN;
    public double LatencySum;
    public int LatencyCount;
    public int RequestCount;
    public int ErrorCount;
    public double MaxGap;
    public double LastLoad = double.NaN;
    public double LastLoadTime = double.NaN;
    public double LastHostTime = double.NaN;
    public double InterruptAt = double.NaN;

    // Timestamps of the last long heartbeat gaps (ring of LongGapsForPauseTrend).
    public double LongGap0 = double.NegativeInfinity;
    public double LongGap1 = double.NegativeInfinity;
    public double LongGap2 = double.NegativeInfinity;

    public long Rejected;

    public EndpointScore Score;
    public EndpointDecision Decision;
    public double LowSince = double.NaN;
    public double HighSince = double.NaN;
    public double LastRestore = double.NegativeInfinity;
    public double RestoreDwell;
    public int FlapCount;
    public long Evacuations;

    public void NoteLongGap(double at)
    {
        LongGap0 = LongGap1;
        LongGap1 = LongGap2;
        LongGap2 = at;
    }

    public bool HasRepeatedLongGaps(double now) => now - LongGap0 <= LongGapWindowSeconds;

    /// <summary>Closes the open bucket if <paramref name="now"/> is past it, feeding the trend
    /// models; a gap of many buckets is closed as one (O(1) regardless of the gap).</summary>
    public void Roll(double now, double bucket)
    {
        if (double.IsNaN(BucketStart))
        {
            BucketStart = now;
            return;
        }

        if (now < BucketStart + bucket)
        {
            return;
        }

        if (LatencyCount > 0)
        {
            var mean = LatencySum / LatencyCount;
            Latency.Update(mean);
            SlowLatency.Update(mean, now);
            LatencyChanged = LatencyChange.Update(mean);
        }

        if (RequestCount > 0)
        {
            Errors.Update((double)ErrorCount / RequestCount);
        }

        if (!double.IsNaN(LastLoad))
        {
            Load.Update(LastLoad);
        }

        if (Phi.HasHeartbeat)
        {
            // Include the silence still open at the end of the bucket, so a pause shows before
            // the heartbeat that ends it arrives.
            // Excess over the usual interval, so the 1 s pause limit means the same for 100 ms
            // and 1 s heartbeats.
            var open = Math.Max(0.0, now - Phi.LastHeartbeatSeconds);
            var usual = Phi.MeanIntervalSeconds;
            GapPeak.Update(Math.Max(0.0, Math.Max(MaxGap, Math.Min(open, 10.0)) - usual), now);
            Pauses.Update(GapPeak.Value);
        }

        LatencySum = 0;
        LatencyCount = 0;
        RequestCount = 0;
        ErrorCount = 0;
        MaxGap = 0;
        BucketStart += bucket * Math.Floor((now - BucketStart) / bucket);
    }

    public double SecondsNeeded()
    {
        var load = double.IsNaN(LastLoad) ? 1.0 : Math.Max(1.0, LastLoad);
        return Math.Ceiling(load / Limits.MoveParallelism) * Limits.SecondsPerMove;
    }
}
