using Relay.Predict.Evaluation;

namespace Relay.Predict.Tests.Evaluation;

public class ForecastEvaluationTests
{
    [Fact]
    public void TauScale_IgnoresABurstOfLargeErrors()
    {
        var rng = new Random(8);
        var clean = new List<double>();
        var contaminated = new List<double>();
        for (var i = 0; i < 4000; i++)
        {
            var e = Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());
            clean.Add(e);

            // 15% of the errors are a hundred times larger, as a first half with spikes gives.
            contaminated.Add(i % 20 < 3 ? 100 * e : e);
        }

        var tauRatio = ForecastEvaluation.TauScale(contaminated) / ForecastEvaluation.TauScale(clean);
        var maeRatio = contaminated.Average(Math.Abs) / clean.Average(Math.Abs);
        Assert.InRange(tauRatio, 1.0, 1.6);
        Assert.True(maeRatio > 10, $"MAE ratio {maeRatio:F1}");
    }

    [Fact]
    public void TauScale_EdgeCases()
    {
        Assert.Equal(double.PositiveInfinity, ForecastEvaluation.TauScale([]));
        Assert.Equal(0, ForecastEvaluation.TauScale([0, 0, 0]));

        // Mostly exact forecasts: falls back to the mean absolute error instead of 0.
        Assert.Equal(1.0, ForecastEvaluation.TauScale([0, 0, 0, 4]), 9);
        Assert.True(ForecastEvaluation.TauScale([1, -2, 3]) > 0);
    }
}
