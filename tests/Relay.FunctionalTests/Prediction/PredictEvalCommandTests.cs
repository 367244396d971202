using Relay.FunctionalTests.Cli;

namespace Relay.FunctionalTests.Prediction;

/// <summary>`relay predict-eval` is the evaluation console (perf/Relay.PredictEval) under the relay's command.</summary>
public sealed class PredictEvalCommandTests
{
    [Fact]
    public async Task PredictEvalHelpDescribesItsOptions()
    {
        var (exit, stdout, _) = await CommandLineTests.RunAsync(TimeSpan.FromSeconds(60), "predict-eval", "--help");
        Assert.Equal(0, exit);
        foreach (var option in new[] { "--out", "--tune", "--nab", "--debug" })
        {
            Assert.Contains(option, stdout, StringComparison.Ordinal);
        }

        var (_, help, _) = await CommandLineTests.RunAsync(TimeSpan.FromSeconds(60), "--help");
        Assert.Contains("predict-eval", help, StringComparison.Ordinal);
    }
}
