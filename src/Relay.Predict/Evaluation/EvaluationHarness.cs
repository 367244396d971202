using Relay.Predict.Stability;

namespace Relay.Predict.Evaluation;

/// <summary>What one detector did on one trace.</summary>
public sealed record TraceOutcome(
    FaultKind Kind,
    int Seed,
    string Detector,
    bool ExpectsAction,
    double FaultStart,
    double Onset,
    double DurationSeconds,
    double FirstTrueDecision,
    int TrueDecisions,
    int FalseDecisions,
    int Flaps,
    double HealthyEndpointDays)
{
    public bool Detected => !double.IsNaN(FirstTrueDecision);

    /// <summary>Decision time minus onset; +∞ when never detected.</summary>
    public double DetectionDelay => Detected ? FirstTrueDecision - Onset : double.PositiveInfinity;

    /// <summary>Onset minus decision time; -∞ when never detected.</summary>
    public double Lead => -DetectionDelay;
}

/// <summary>One bin of the score calibration check: mean predicted P(interruption within the
/// horizon) against the observed frequency.</summary>
public sealed record CalibrationBin(double Low, double High, long Samples, double MeanPredicted, double Observed);

/// <summary>Collects (score, outcome) pairs once a second for the calibration table.</summary>
public sealed class CalibrationCollector
{
    private static readonly double[] _edges = [0.0, 0.02, 0.1, 0.3, 0.5, 0.8, 1.0000001];
    private readonly long[] _count = new long[_edges.Length - 1];
    private readonly double[] _predicted = new double[_edges.Length - 1];
    private readonly long[] _observed = new long[_edges.Length - 1];
    private double _brier;
    private long _total;

    public void Add(double probability, bool interrupted)
    {
        var bin = 0;
        while (bin < _count.Length - 1 && probability >= _edges[bin + 1])
        {
            bin++;
        }

        _count[bin]++;
        _predicted[bin] += probability;
        _observed[bin] += interrupted ? 1 : 0;
        var y = interrupted ? 1.0 : 0.0;
        _brier += (probability - y) * (probability - y);
        _total++;
    }

    public double BrierScore => _total == 0 ? double.NaN : _brier / _total;

    public IReadOnlyList<CalibrationBin> Bins()
    {
        var bins = new List<CalibrationBin>();
        for (var i = 0; i < _count.Length; i++)
        {
            bins.Add(new CalibrationBin(_edges[i], Math.Min(1.0, _edges[i + 1]), _count[i],
                _count[i] == 0 ? double.NaN : _predicted[i] / _count[i], _count[i] == 0 ? double.NaN : (double)_observed[i] / _count[i]));
        }

        return bins;
    }
}

/// <summary>
/// Replays traces on a virtual clock (no wall-clock time, no I/O): events in time order, every
/// detector ticked every 100 ms, each transition to "evacuate" recorded and classified against
/// the trace's ground truth.
/// </summary>
public static class EvaluationHarness
{
    public const double TickSeconds = 0.1;

    public static TraceOutcome Replay(Trace trace, IFailureDetector detector, TraceSettings settings, CalibrationCollector? calibration = null, double horizonSeconds = PredictorDefaults.HorizonSeconds)
    {
        ArgumentNullException.ThrowIfNull(trace);
        ArgumentNullException.ThrowIfNull(detector);
        detector.Reset(trace, settings);
        var n = trace.Endpoints;
        var previous = new bool[n];
        var evacuations = new int[n];
        var events = trace.Events;
        var next = 0;
        var firstTrue = double.NaN;
        int trueDecisions = 0, falseDecisions = 0;
        var relay = calibration is null ? null : detector as RelayDetector;
        var ticks = (long)Math.Floor(trace.DurationSeconds / TickSeconds);
        for (long k = 1; k <= ticks; k++)
        {
            var now = k * TickSeconds;
            while (next < events.Length && events[next].Time <= now)
            {
                detector.OnEvent(events[next]);
                next++;
            }

            detector.Tick(now);
            for (var i = 0; i < n; i++)
            {
                var evacuated = detector.IsEvacuated(i);
                if (evacuated && !previous[i])
                {
                    evacuations[i]++;
                    if (trace.ExpectsAction && i == trace.FaultyEndpoint && now >= trace.FaultStart)
                    {
                        trueDecisions++;
                        if (double.IsNaN(firstTrue))
                        {
                            firstTrue = now;
                        }
                    }
                    else
                    {
                        falseDecisions++;
                    }
                }

                previous[i] = evacuated;
            }

            if (relay is not null && k % 10 == 0)
            {
                for (var i = 0; i < n; i++)
                {
                    ref readonly var score = ref relay.Predictor.GetScore(i);
                    if (score.Status != ScoreStatus.Ok)
                    {
                        continue;
                    }

                    var interrupted = trace.ExpectsAction && i == trace.FaultyEndpoint && now + horizonSeconds >= trace.Onset;
                    calibration!.Add(score.Probability, interrupted);
                }
            }
        }

        var flaps = 0;
        foreach (var count in evacuations)
        {
            flaps += Math.Max(0, count - 1);
        }

        var healthySeconds = (double)n * trace.DurationSeconds;
        if (trace.FaultyEndpoint >= 0 && trace.ExpectsAction)
        {
            healthySeconds -= trace.DurationSeconds - trace.FaultStart;
        }

        return new TraceOutcome(trace.Kind, trace.Seed, detector.Name, trace.ExpectsAction, trace.FaultStart, trace.Onset, trace.DurationSeconds,
            firstTrue, trueDecisions, falseDecisions, flaps, healthySeconds / 86400.0);
    }

    /// <summary>The detectors of the report: Relay.Predict and the baselines.</summary>
    public static IReadOnlyList<Func<IFailureDetector>> DefaultDetectors(PredictorOptions? options = null) =>
    [
        () => new RelayDetector(options),
        static () => new EnvoyOutlierDetector(),
        static () => new AkkaPhiDetector(),
        static () => new HaproxyCheckDetector(),
        static () => new ReactiveThresholdDetector(),
    ];

    public static IReadOnlyList<FaultKind> AllKinds { get; } = Enum.GetValues<FaultKind>();

    /// <summary>Seeds the defaults were tuned on; never report on these.</summary>
    public static IReadOnlyList<int> TuningSeeds { get; } = Enumerable.Range(1, 10).ToArray();

    /// <summary>Seeds the report and the tests use; never tune on these.</summary>
    public static IReadOnlyList<int> ReportSeeds { get; } = Enumerable.Range(1001, 10).ToArray();

    /// <summary>Replays every kind × seed through every detector.</summary>
    public static SyntheticReport Run(IReadOnlyList<int> seeds, IReadOnlyList<FaultKind>? kinds = null, TraceSettings? settings = null, PredictorOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(seeds);
        settings ??= new TraceSettings();
        kinds ??= AllKinds;
        var detectors = DefaultDetectors(options);
        var outcomes = new List<TraceOutcome>();
        var calibration = new CalibrationCollector();
        foreach (var kind in kinds)
        {
            foreach (var seed in seeds)
            {
                var trace = TraceGenerator.Generate(kind, seed, settings);
                foreach (var make in detectors)
                {
                    var detector = make();
                    outcomes.Add(Replay(trace, detector, settings, detector is RelayDetector ? calibration : null, options?.HorizonSeconds ?? PredictorDefaults.HorizonSeconds));
                }
            }
        }

        return new SyntheticReport(outcomes, calibration);
    }
}

/// <summary>Aggregates of one detector on one trace kind.</summary>
public sealed record DetectorSummary(
    FaultKind Kind,
    string Detector,
    int Traces,
    int Detected,
    double DetectionP50,
    double DetectionP99,
    double LeadP50,
    double ShareEarly1s,
    int TrueDecisions,
    int FalseDecisions,
    double FalsePerEndpointDay,
    double FlapsPerTrace)
{
    public double Precision => TrueDecisions + FalseDecisions == 0 ? double.NaN : (double)TrueDecisions / (TrueDecisions + FalseDecisions);
}

/// <summary>The outcomes of a synthetic run with the aggregates the targets are stated in.</summary>
public sealed class SyntheticReport(IReadOnlyList<TraceOutcome> outcomes, CalibrationCollector calibration)
{
    public const string RelayName = "Relay.Predict";
    public const string EnvoyName = "Envoy outlier (defaults)";

    public IReadOnlyList<TraceOutcome> Outcomes { get; } = outcomes;

    public CalibrationCollector Calibration { get; } = calibration;

    public IReadOnlyList<DetectorSummary> Summaries()
    {
        var result = new List<DetectorSummary>();
        foreach (var group in Outcomes.GroupBy(o => (o.Kind, o.Detector)))
        {
            result.Add(Summarise(group.Key.Kind, group.Key.Detector, [.. group]));
        }

        return result;
    }

    public static DetectorSummary Summarise(FaultKind kind, string detector, IReadOnlyList<TraceOutcome> items)
    {
        var expecting = items.Where(o => o.ExpectsAction).ToArray();
        var delays = expecting.Select(o => o.DetectionDelay).ToArray();
        var leads = expecting.Select(o => o.Lead).ToArray();
        var days = items.Sum(o => o.HealthyEndpointDays);
        return new DetectorSummary(kind, detector, items.Count, expecting.Count(o => o.Detected),
            Quantile(delays, 0.5), Quantile(delays, 0.99), Quantile(leads, 0.5),
            expecting.Length == 0 ? double.NaN : (double)expecting.Count(o => o.Lead >= 1.0) / expecting.Length,
            items.Sum(o => o.TrueDecisions), items.Sum(o => o.FalseDecisions),
            days > 0 ? items.Sum(o => o.FalseDecisions) / days : double.NaN,
            items.Count == 0 ? double.NaN : (double)items.Sum(o => o.Flaps) / items.Count);
    }

    /// <summary>Relay's aggregate over the gradual kinds (latency/error ramps, GC pauses, overload).</summary>
    public DetectorSummary Gradual(string detector = RelayName)
    {
        var items = Outcomes.Where(o => o.Detector == detector && IsGradual(o.Kind)).ToArray();
        return Summarise(FaultKind.NoFault, detector, items);
    }

    /// <summary>Median over gradual traces of (Envoy's decision − Relay's decision), each
    /// censored at the trace end when it never decides.</summary>
    public double MedianAdvanceOverEnvoy()
    {
        var relay = Outcomes.Where(o => o.Detector == RelayName && IsGradual(o.Kind)).ToDictionary(o => (o.Kind, o.Seed));
        var advances = new List<double>();
        foreach (var envoy in Outcomes.Where(o => o.Detector == EnvoyName && IsGradual(o.Kind)))
        {
            if (relay.TryGetValue((envoy.Kind, envoy.Seed), out var r))
            {
                var e = envoy.Detected ? envoy.FirstTrueDecision : envoy.DurationSeconds;
                var d = r.Detected ? r.FirstTrueDecision : r.DurationSeconds;
                advances.Add(e - d);
            }
        }

        return Quantile([.. advances], 0.5);
    }

    public static bool IsGradual(FaultKind kind) => kind is FaultKind.LatencyRamp or FaultKind.ErrorRamp or FaultKind.GcPauses or FaultKind.Overload;

    /// <summary>Linear-interpolated quantile; infinities sort to the ends; NaN for none.</summary>
    public static double Quantile(double[] values, double q)
    {
        if (values.Length == 0)
        {
            return double.NaN;
        }

        var sorted = (double[])values.Clone();
        Array.Sort(sorted);
        var position = q * (sorted.Length - 1);
        var lo = (int)Math.Floor(position);
        var hi = (int)Math.Ceiling(position);
        if (lo == hi || double.IsInfinity(sorted[lo]) || double.IsInfinity(sorted[hi]))
        {
            return position - lo < 0.5 ? sorted[lo] : sorted[hi];
        }

        return sorted[lo] + ((position - lo) * (sorted[hi] - sorted[lo]));
    }
}
