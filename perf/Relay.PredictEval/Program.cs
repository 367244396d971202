using System.Globalization;
using Relay.Predict.Evaluation;

namespace Relay.PredictEval;

/// <summary>
/// relay-predict-eval: replays the synthetic traces (report seeds unless --tune) and the NAB
/// series through Relay.Predict and the baselines, prints the figures and, with --out, writes
/// the results tables into docs/prediction.md between the predict-eval markers.
/// Options: --tune (tuning seeds; never writes), --nab DIR, --out FILE, --debug [Kind] [--all].
/// </summary>
public static class Program
{
    public const string Usage = """
        relay predict-eval (also: dotnet run -c Release --project perf/Relay.PredictEval --):
        replays the synthetic fault traces and the NAB series through Relay.Predict and the
        baselines (Envoy outlier detection, Akka phi, HAProxy checks, a reactive threshold) and
        prints detection, lead, precision, false migrations, forecasts and scaling (docs/prediction.md).

        Options:
          --out FILE        rewrite the results between the predict-eval markers of FILE (docs/prediction.md)
          --tune            the tuning seeds instead of the report seeds (never writes a report)
          --nab DIR         the NAB data directory (default: found above the binary or the current directory)
          --debug [KIND]    print every false or flapping decision per trace (KIND: one trace kind); --all prints every one
          --help            this text
        """;

    public static int Main(string[] args)
    {
        ArgumentNullException.ThrowIfNull(args);
        if (args.Contains("--help") || args.Contains("-h"))
        {
            Console.WriteLine(Usage);
            return 0;
        }

        var tune = args.Contains("--tune");
        var seeds = tune ? EvaluationHarness.TuningSeeds : EvaluationHarness.ReportSeeds;
        if (args.Contains("--debug"))
        {
            Debug(args, seeds);
            return 0;
        }

        var nab = Option(args, "--nab") ?? NabData.Locate(AppContext.BaseDirectory) ?? NabData.Locate(Environment.CurrentDirectory);
        var output = Option(args, "--out");
        Console.WriteLine($"seeds {seeds[0]}-{seeds[^1]}, NAB at {nab ?? "(not found: skipped)"}");
        var report = EvaluationHarness.Run(seeds);
        foreach (var o in report.Outcomes.Where(o => o.Detector == SyntheticReport.RelayName && (o.FalseDecisions > 0 || o.Flaps > 0)))
        {
            Console.WriteLine($"relay outcome with false decisions or flaps: {o}");
        }

        foreach (var s in report.Summaries())
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{s.Kind,-12} {s.Detector,-32} n={s.Traces} det={s.Detected} p50={s.DetectionP50:F2} p99={s.DetectionP99:F2} lead={s.LeadP50:F1} early={s.ShareEarly1s:P0} TP={s.TrueDecisions} FP={s.FalseDecisions} fpd={s.FalsePerEndpointDay:F2} flaps={s.FlapsPerTrace:F1}"));
        }

        var stress = EvaluationHarness.Run(seeds, settings: TraceSettings.Stress);
        foreach (var (target, measured, met) in ReportWriter.Targets(stress, []))
        {
            Console.WriteLine($"STRESS {(met ? "MET " : "MISS")} {target}: {measured}");
        }

        foreach (var o in stress.Outcomes.Where(o => o.Detector == SyntheticReport.RelayName && (o.FalseDecisions > 0 || o.Flaps > 0)))
        {
            Console.WriteLine($"stress relay outcome with false decisions or flaps: {o}");
        }

        IReadOnlyList<ForecastResult> forecasts = [];
        IReadOnlyList<WindowDetectionResult> windows = [];
        IReadOnlyList<ScalingResult> scaling = [];
        if (nab is not null)
        {
            scaling = NabData.EvaluateScaling(nab);
            foreach (var r in scaling)
            {
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"scaling lead={r.LeadSteps} {r.Policy,-55} under={r.UnderProvisionedShare:P1} endpoints={r.MeanEndpoints:F1} actions={r.ScaleActions}"));
            }

            forecasts = NabData.EvaluateForecasts(nab);
            windows = NabData.EvaluateWindows(nab);
            foreach (var f in forecasts)
            {
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{f.Series,-50} MASE={f.Mase:F3} sMAPE={f.SmapeModel:F1}/{f.SmapeSeasonalNaive:F1} vsNaive={f.MaeRatioVsNaive:F3} cov={f.Coverage80:P1} a={f.Alpha} b={f.Beta} g={f.Gamma} clip={f.RobustClip} log={f.LogScale}"));
            }

            foreach (var w in windows)
            {
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{w.Series,-50} {w.Detector,-36} {w.Caught}/{w.Windows} delay={w.MedianDetectionHoursAfterWindowStart:F1}h FA={w.FalseAlarms} ({w.FalseAlarmsPerDay:F2}/day)"));
            }
        }

        foreach (var (target, measured, met) in ReportWriter.Targets(report, forecasts))
        {
            Console.WriteLine($"{(met ? "MET " : "MISS")} {target}: {measured}");
        }

        if (output is not null)
        {
            if (tune)
            {
                Console.Error.WriteLine("refusing to write a report from the tuning seeds");
                return 2;
            }

            var table = ReportWriter.Render(report, seeds, forecasts, windows, "dotnet run -c Release --project perf/Relay.PredictEval -- --out docs/prediction.md", stress, scaling);
            var text = File.Exists(output) ? File.ReadAllText(output) : "";
            var begin = text.IndexOf(ReportWriter.BeginMarker, StringComparison.Ordinal);
            var end = text.IndexOf(ReportWriter.EndMarker, StringComparison.Ordinal);
            text = begin >= 0 && end > begin
                ? string.Concat(text.AsSpan(0, begin), table.TrimEnd('\n'), text.AsSpan(end + ReportWriter.EndMarker.Length))
                : text + Environment.NewLine + table;
            File.WriteAllText(output, text);
            Console.WriteLine($"wrote {output}");
        }

        return 0;
    }

    private static void Debug(string[] args, IReadOnlyList<int> seeds)
    {
        var only = args.SkipWhile(a => a != "--debug").Skip(1).FirstOrDefault(a => !a.StartsWith("--", StringComparison.Ordinal));
        foreach (var kind in EvaluationHarness.AllKinds.Where(k => only is null || k.ToString() == only))
        {
            foreach (var seed in seeds)
            {
                var trace = TraceGenerator.Generate(kind, seed);
                var relay = new RelayDetector();
                var outcome = EvaluationHarness.Replay(trace, relay, new TraceSettings());
                if (outcome.FalseDecisions > 0 || outcome.Flaps > 0)
                {
                    Console.WriteLine($"{kind} seed={seed}: {outcome}");
                }

                foreach (var (time, endpoint, score) in relay.Evacuations)
                {
                    var isFalse = endpoint != trace.FaultyEndpoint || time < trace.FaultStart || !trace.ExpectsAction;
                    if (isFalse || args.Contains("--all"))
                    {
                        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{(isFalse ? "FALSE" : "EVAC ")} {kind} seed={seed} t={time:F1} ep={endpoint} faulty={trace.FaultyEndpoint} start={trace.FaultStart:F1} onset={trace.Onset:F1} {score}"));
                    }
                }
            }
        }
    }

    private static string? Option(string[] args, string name)
    {
        var i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
    }
}
