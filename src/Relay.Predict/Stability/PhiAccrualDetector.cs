using Relay.Predict.Forecasting;

namespace Relay.Predict.Stability;

/// <summary>Options for <see cref="PhiAccrualDetector"/>; the names follow Akka's failure detector.</summary>
public sealed record PhiAccrualOptions
{
    /// <summary>Akka cluster defaults: threshold 8, 1000 samples, min-std-deviation 100 ms,
    /// acceptable-heartbeat-pause 3 s, first-heartbeat-estimate 1 s (akka-cluster reference.conf).</summary>
    public static PhiAccrualOptions AkkaDefaults { get; } = new()
    {
        Threshold = 8.0,
        MaxSampleSize = 1000,
        MinStdDeviationSeconds = 0.1,
        AcceptableHeartbeatPauseSeconds = 3.0,
        FirstHeartbeatEstimateSeconds = 1.0,
    };

    /// <summary><remarks>Defaults to 8.</remarks></summary>
    public double Threshold { get; init; } = 8.0;

    /// <summary><remarks>Defaults to 200 intervals.</remarks></summary>
    public int MaxSampleSize { get; init; } = 200;

    /// <summary><remarks>Defaults to 100 ms.</remarks></summary>
    public double MinStdDeviationSeconds { get; init; } = 0.1;

    /// <summary>Added to the mean interval before phi is computed.
    /// <remarks>Defaults to 250 ms: heartbeats here are 100-250 ms apart, and a 500 ms pause
    /// must not look like a crash (tuned on the tuning seeds, docs/prediction.md).</remarks></summary>
    public double AcceptableHeartbeatPauseSeconds { get; init; } = 0.25;

    /// <summary><remarks>Defaults to 250 ms.</remarks></summary>
    public double FirstHeartbeatEstimateSeconds { get; init; } = 0.25;

    public void Validate(string argumentName)
    {
        if (!(Threshold > 0) || MaxSampleSize < 2 || !(MinStdDeviationSeconds > 0) || !(AcceptableHeartbeatPauseSeconds >= 0) || !(FirstHeartbeatEstimateSeconds > 0))
        {
            throw new ArgumentException("Threshold, MinStdDeviationSeconds and FirstHeartbeatEstimateSeconds must be positive, MaxSampleSize at least 2, AcceptableHeartbeatPauseSeconds not negative.", argumentName);
        }
    }
}

/// <summary>
/// The phi accrual failure detector (Hayashibara et al., 2004) as Akka implements it: a bounded
/// window of inter-arrival times with running sum and sum of squares, phi from a logistic
/// approximation of the normal CDF with mean + acceptable pause and a floored deviation.
/// O(1) and allocation-free per heartbeat.
/// </summary>
public sealed class PhiAccrualDetector
{
    private readonly double[] _intervals;
    private int _count;
    private int _next;
    private double _sum;
    private double _sumSquares;
    private double _lastHeartbeat = double.NaN;
    private bool _skipNextInterval;

    public PhiAccrualDetector(PhiAccrualOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate(nameof(options));
        Options = options;
        _intervals = new double[options.MaxSampleSize];
    }

    public PhiAccrualOptions Options { get; }

    public bool HasHeartbeat => !double.IsNaN(_lastHeartbeat);

    public double LastHeartbeatSeconds => _lastHeartbeat;

    public int SampleCount => _count;

    public double MeanIntervalSeconds => _count == 0 ? double.NaN : _sum / _count;

    /// <summary>Records a heartbeat. Non-finite or earlier-than-last timestamps are rejected.</summary>
    public bool Heartbeat(double nowSeconds)
    {
        if (!double.IsFinite(nowSeconds))
        {
            return false;
        }

        if (double.IsNaN(_lastHeartbeat))
        {
            // Bootstrap as Akka does: two samples at estimate ± estimate/4.
            var estimate = Options.FirstHeartbeatEstimateSeconds;
            Add(estimate - (estimate / 4));
            Add(estimate + (estimate / 4));
            _lastHeartbeat = nowSeconds;
            return true;
        }

        if (nowSeconds < _lastHeartbeat)
        {
            return false;
        }

        if (_skipNextInterval)
        {
            _skipNextInterval = false;
        }
        else
        {
            Add(nowSeconds - _lastHeartbeat);
        }

        _lastHeartbeat = nowSeconds;
        return true;
    }

    /// <summary>Forgets the time of the last heartbeat without recording an interval: used after
    /// a clock jump, when the silence measured across the jump means nothing.</summary>
    public void Rebase(double nowSeconds)
    {
        if (!double.IsNaN(_lastHeartbeat) && double.IsFinite(nowSeconds))
        {
            _lastHeartbeat = nowSeconds;
            _skipNextInterval = true;
        }
    }

    /// <summary>phi at <paramref name="nowSeconds"/>; 0 before the first heartbeat.</summary>
    public double Phi(double nowSeconds)
    {
        if (double.IsNaN(_lastHeartbeat) || !double.IsFinite(nowSeconds))
        {
            return 0.0;
        }

        var elapsed = Math.Max(0.0, nowSeconds - _lastHeartbeat);
        var mean = (_sum / _count) + Options.AcceptableHeartbeatPauseSeconds;
        var variance = Math.Max(0.0, (_sumSquares / _count) - ((_sum / _count) * (_sum / _count)));
        var stdDev = Math.Max(Math.Sqrt(variance), Options.MinStdDeviationSeconds);
        return PhiOf(elapsed, mean, stdDev);
    }

    public bool IsAvailable(double nowSeconds) => Phi(nowSeconds) < Options.Threshold;

    /// <summary>Akka's phi: logistic approximation of the normal CDF, accurate to ~1e-3 and
    /// monotone, with the same branch to keep precision in the tail.</summary>
    public static double PhiOf(double elapsed, double mean, double stdDev)
    {
        var y = (elapsed - mean) / stdDev;
        var e = Math.Exp(-y * (1.5976 + (0.070566 * y * y)));
        if (elapsed > mean)
        {
            if (double.IsInfinity(e))
            {
                return 0.0;
            }

            // e/(1+e) underflows for large y; -log10(e) - ... keep finite.
            return e == 0.0 ? 300.0 : -Math.Log10(e / (1.0 + e));
        }

        return -Math.Log10(1.0 - (1.0 / (1.0 + e)));
    }

    /// <summary>P(down | phi) with prior odds 10^-threshold: phi = threshold means even odds.</summary>
    public static double ProbabilityDown(double phi, double threshold)
        => phi < threshold - 17 ? 0.0 : ForecastMath.Logistic((phi - threshold) * Ln10);

    private const double Ln10 = 2.302585092994046;

    private void Add(double interval)
    {
        if (_count == _intervals.Length)
        {
            var old = _intervals[_next];
            _sum -= old;
            _sumSquares -= old * old;
        }
        else
        {
            _count++;
        }

        _intervals[_next] = interval;
        _sum += interval;
        _sumSquares += interval * interval;
        _next = (_next + 1) % _intervals.Length;
    }
}
