using Relay.Predict.Evaluation;

namespace Relay.Predict.Tests.Evaluation;

/// <summary>Runs the synthetic harness once on the report seeds (never the tuning seeds).</summary>
public sealed class ReportSeedsFixture
{
    public SyntheticReport Report { get; } = EvaluationHarness.Run(EvaluationHarness.ReportSeeds);
}

/// <summary>The targets as the harness measures them on the report seeds; a regression
/// in the models, the guards or the defaults fails here.</summary>
public class SyntheticTargetTests(ReportSeedsFixture fixture) : IClassFixture<ReportSeedsFixture>
{
    private readonly SyntheticReport _report = fixture.Report;

    private DetectorSummary Relay(FaultKind kind) => _report.Summaries().Single(s => s.Kind == kind && s.Detector == SyntheticReport.RelayName);

    private DetectorSummary Of(FaultKind kind, string detectorPrefix) => _report.Summaries().Single(s => s.Kind == kind && s.Detector.StartsWith(detectorPrefix, StringComparison.Ordinal));

    [Fact]
    public void TuningAndReportSeeds_AreDisjoint()
        => Assert.Empty(EvaluationHarness.TuningSeeds.Intersect(EvaluationHarness.ReportSeeds));

    [Fact]
    public void Crash_DetectedWithinOneSecondMedianThreeSecondsP99()
    {
        var crash = Relay(FaultKind.Crash);
        Assert.Equal(crash.Traces, crash.Detected);
        Assert.True(crash.DetectionP50 <= 1.0, $"p50 {crash.DetectionP50:F2}s");
        Assert.True(crash.DetectionP99 <= 3.0, $"p99 {crash.DetectionP99:F2}s");
        Assert.Equal(0, crash.FalseDecisions);
    }

    [Fact]
    public void Baselines_BehaveAsTheirDefaultsDo()
    {
        // Akka with its defaults (3 s acceptable pause) takes about 4 s; HAProxy 2 s × fall 3
        // about 4-8 s; neither sees latency.
        Assert.InRange(Of(FaultKind.Crash, "Akka").DetectionP50, 3.0, 4.5);
        Assert.InRange(Of(FaultKind.Crash, "HAProxy").DetectionP50, 4.0, 8.0);
        Assert.Equal(0, Of(FaultKind.LatencyRamp, "Akka").Detected);
        Assert.Equal(0, Of(FaultKind.LatencyRamp, "HAProxy").Detected);
    }

    [Fact]
    public void GradualFaults_CaughtEarlyAndPrecisely()
    {
        var gradual = _report.Gradual();
        Assert.True(gradual.LeadP50 >= 10, $"median lead {gradual.LeadP50:F1}s");
        Assert.True(gradual.ShareEarly1s >= 0.8, $"caught ≥1 s early {gradual.ShareEarly1s:P0}");
        Assert.True(gradual.Precision >= 0.8, $"precision {gradual.Precision:F2}");
        var advance = _report.MedianAdvanceOverEnvoy();
        Assert.True(advance >= 15, $"advance over Envoy {advance:F1}s");
    }

    [Theory]
    [InlineData(FaultKind.LatencyRamp)]
    [InlineData(FaultKind.ErrorRamp)]
    [InlineData(FaultKind.GcPauses)]
    [InlineData(FaultKind.Overload)]
    public void EachGradualKind_CaughtBeforeOnset(FaultKind kind)
    {
        var s = Relay(kind);
        Assert.Equal(s.Traces, s.Detected);
        Assert.True(s.LeadP50 >= 10, $"{kind}: median lead {s.LeadP50:F1}s");
    }

    [Fact]
    public void SingleHalfSecondPause_MigratesNothing()
    {
        var pause = Relay(FaultKind.SinglePause);
        Assert.Equal(0, pause.TrueDecisions + pause.FalseDecisions);
    }

    [Fact]
    public void NoFault_AtMostOneFalseMigrationPerEndpointDay()
    {
        var none = Relay(FaultKind.NoFault);
        Assert.True(none.FalsePerEndpointDay <= 1.0, $"{none.FalsePerEndpointDay:F2} per endpoint-day");
    }

    [Fact]
    public void SpotNotice_MovesBeforeTheInterruption()
    {
        var notice = Relay(FaultKind.SpotNotice);
        Assert.Equal(notice.Traces, notice.ShareEarly1s * notice.Traces, 6);
    }

    [Fact]
    public void Flapping_DoesNotFlapMoreThanBaselines()
    {
        var relay = Relay(FaultKind.Flapping);
        Assert.Equal(relay.Traces, relay.Detected);
        Assert.True(relay.FlapsPerTrace <= Of(FaultKind.Flapping, "Akka").FlapsPerTrace);
        Assert.True(relay.FlapsPerTrace < Of(FaultKind.Flapping, "Reactive").FlapsPerTrace);
    }

    [Fact]
    public void GrayFailure_IsDetected()
    {
        var gray = Relay(FaultKind.GrayFailure);
        Assert.Equal(gray.Traces, gray.Detected);
        Assert.Equal(0, gray.FalseDecisions);
    }

    [Fact]
    public void Score_IsRoughlyCalibrated()
    {
        // High predicted probabilities must be followed by interruptions more often than low ones.
        var bins = _report.Calibration.Bins().Where(b => b.Samples >= 50).ToArray();
        Assert.True(bins.Length >= 2);
        Assert.True(bins[^1].Observed > bins[0].Observed + 0.5, string.Join("; ", bins.Select(b => $"{b.Low}-{b.High}: {b.Observed:F2} ({b.Samples})")));
        Assert.True(_report.Calibration.BrierScore < 0.05, $"Brier {_report.Calibration.BrierScore:F4}");
    }

    [Fact]
    public void Report_RendersEveryTargetRow()
    {
        var text = ReportWriter.Render(_report, EvaluationHarness.ReportSeeds, [], [], "test");
        Assert.Contains(ReportWriter.BeginMarker, text, StringComparison.Ordinal);
        Assert.Contains("crash detection p50", text, StringComparison.Ordinal);
        Assert.Contains("| Crash | Akka phi (defaults) |", text, StringComparison.Ordinal);
        Assert.DoesNotContain("**no**", text, StringComparison.Ordinal);
    }
}
