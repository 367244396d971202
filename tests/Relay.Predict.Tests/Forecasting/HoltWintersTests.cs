using Relay.Predict.Forecasting;

namespace Relay.Predict.Tests.Forecasting;

/// <summary>Robust Holt-Winters (Huber-cleaned updates, robust start) and the calibrated interval.</summary>
public class HoltWintersTests
{
    private const int M = 24;

    [Fact]
    public void RobustStart_KeepsSpikesOfTheFirstSeasonOutOfTheSeason()
    {
        var classic = new HoltWinters(M, 0.2, 0.0, 0.1);
        var robust = new HoltWinters(M, 0.2, 0.0, 0.1, robustClip: 2);
        var rng = new Random(21);
        for (var t = 0; t < M; t++)
        {
            // Two wild samples in the first season, at phases 5 and 17.
            var x = Seasonal(t) + rng.NextDouble() + (t % M is 5 or 17 ? 5_000 : 0);
            classic.Update(x);
            robust.Update(x);
        }

        // Phase 5 of the next season: the classic start repeats the spike; the robust one keeps
        // at most k·1.4826·MAD of it (MAD of a sine of amplitude 20 ≈ 14, so ≈ 42 above the
        // level instead of 5,000).
        Assert.True(classic.Forecast(6) - Seasonal(5) > 1_000, $"classic {classic.Forecast(6):F0}");
        Assert.InRange(robust.Forecast(6) - robust.Level, 0, 2 * 1.4826 * 14.2);
        Assert.InRange(robust.Forecast(7) - Seasonal(6), -3, 3);

        // The level is not dragged either: the median of the season, not its mean.
        Assert.InRange(robust.Level, 95, 105);
        Assert.True(classic.Level > 400, $"classic level {classic.Level:F0}");
    }

    [Fact]
    public void RobustUpdate_SpikeDoesNotDragLevelOrSeason()
    {
        var classic = new HoltWinters(M, 0.3, 0.01, 0.4);
        var robust = new HoltWinters(M, 0.3, 0.01, 0.4, robustClip: 2);
        var rng = new Random(9);
        var t = 0;
        for (; t < M * 10; t++)
        {
            var x = Seasonal(t) + Normal(rng);
            classic.Update(x);
            robust.Update(x);
        }

        var levelBefore = robust.Level;
        classic.Update(Seasonal(t) + 10_000);
        robust.Update(Seasonal(t) + 10_000);
        t++;

        Assert.InRange(robust.Level - levelBefore, -3, 3);
        Assert.True(classic.Level - levelBefore > 1_000, $"classic level moved {classic.Level - levelBefore:F0}");

        // One season after the spike, the robust forecast is still the pattern.
        Assert.InRange(robust.Forecast(M) - Seasonal(t - 1 + M), -5, 5);
        Assert.True(classic.Forecast(M) - Seasonal(t - 1 + M) > 1_000);
    }

    [Fact]
    public void RobustUpdate_FollowsALastingLevelShift()
    {
        var robust = new HoltWinters(M, 0.3, 0.0, 0.1, robustClip: 2);
        var rng = new Random(4);
        var t = 0;
        for (; t < M * 10; t++)
        {
            robust.Update(Seasonal(t) + Normal(rng));
        }

        // +50 for good (σ = 1): outliers at first, the new normal after the scale has grown.
        var shiftAt = t;
        for (; t < shiftAt + (M * 4); t++)
        {
            robust.Update(Seasonal(t) + 50 + Normal(rng));
        }

        Assert.InRange(robust.Forecast(1) - Seasonal(t), 45, 55);
    }

    [Fact]
    public void Robust_OnACleanSeriesForecastsLikeTheClassicModel()
    {
        var classic = new HoltWinters(M, 0.2, 0.01, 0.1, trackedHorizon: 2);
        var robust = new HoltWinters(M, 0.2, 0.01, 0.1, trackedHorizon: 2, robustClip: 2);
        var rng = new Random(7);
        double classicError = 0, robustError = 0, gap = 0;
        var pending = new double[2, 2];
        var scored = 0;
        for (var t = 0; t < M * 200; t++)
        {
            var x = Seasonal(t) + (0.01 * t) + (3 * Normal(rng));
            var slot = t % 2;
            if (t >= M * 20)
            {
                classicError += Math.Abs(x - pending[0, slot]);
                robustError += Math.Abs(x - pending[1, slot]);
                gap += Math.Abs(pending[0, slot] - pending[1, slot]);
                scored++;
            }

            classic.Update(x);
            robust.Update(x);
            pending[0, slot] = classic.Forecast(2);
            pending[1, slot] = robust.Forecast(2);
        }

        // Gaussian noise: Huber at k = 2 costs a few percent of efficiency, no more.
        Assert.InRange(robustError / classicError, 0.97, 1.05);
        Assert.True(gap / scored < 0.5, $"mean |classic − robust| {gap / scored:F2}");
    }

    [Fact]
    public void Robust_ConstantStartIsNotStuck()
    {
        // A first season of one value has no spread (MAD 0): the model must still learn the
        // pattern and the level that follow, not clip everything to nothing forever.
        var robust = new HoltWinters(M, 0.3, 0.0, 0.3, robustClip: 2);
        var rng = new Random(5);
        var t = 0;
        for (; t < M; t++)
        {
            robust.Update(0);
        }

        for (; t < M * 30; t++)
        {
            robust.Update(Seasonal(t) + Normal(rng));
        }

        Assert.InRange(robust.Forecast(1) - Seasonal(t), -5, 5);
        Assert.InRange(robust.Forecast(7) - Seasonal(t + 6), -5, 5);
    }

    [Fact]
    public void Robust_RejectsNonFiniteInputAndAcceptsNegatives()
    {
        var robust = new HoltWinters(M, 0.2, 0.0, 0.1, robustClip: 2);
        var rng = new Random(3);
        for (var t = 0; t < M * 3; t++)
        {
            Assert.True(robust.Update(Seasonal(t) - 200 + Normal(rng)));
        }

        var (forecast, count, interval) = (robust.Forecast(1), robust.Count, robust.PredictionInterval(1));
        Assert.False(robust.Update(double.NaN));
        Assert.False(robust.Update(double.PositiveInfinity));
        Assert.False(robust.Update(double.NegativeInfinity));
        Assert.Equal(forecast, robust.Forecast(1));
        Assert.Equal(count, robust.Count);
        Assert.Equal(interval, robust.PredictionInterval(1));
        Assert.InRange(forecast - (Seasonal(M * 3) - 200), -5, 5);

        // A huge finite value is cleaned like any outlier and leaves everything finite.
        Assert.True(robust.Update(1e300));
        Assert.True(double.IsFinite(robust.Forecast(1)) && double.IsFinite(robust.Level));
        Assert.Throws<ArgumentOutOfRangeException>(() => new HoltWinters(M, 0.2, 0.0, 0.1, robustClip: 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new HoltWinters(M, 0.2, 0.0, 0.1, robustClip: double.NaN));
    }

    [Fact]
    public void CalibratedInterval_CoversItsShareOnBurstyErrors()
    {
        // Calm stretches and bursts of ten times the noise: an interval scaled by a running
        // error would over-cover after every burst; scoring the issued interval keeps the miss
        // share at 1 − c.
        var hw = new HoltWinters(M, 0.2, 0.0, 0.1, trackedHorizon: 3);
        var rng = new Random(17);
        var lower = new double[3];
        var upper = new double[3];
        int covered = 0, scored = 0;
        for (var t = 0; t < M * 400; t++)
        {
            var burst = (t / 150) % 5 == 0;
            var x = Seasonal(t) + ((burst ? 10 : 1) * Normal(rng));
            var slot = t % 3;
            if (t >= M * 20)
            {
                covered += x >= lower[slot] && x <= upper[slot] ? 1 : 0;
                scored++;
            }

            hw.Update(x);
            (lower[slot], upper[slot]) = hw.PredictionInterval(3);
        }

        Assert.InRange((double)covered / scored, 0.78, 0.82);
    }

    [Fact]
    public void Robust_UpdateAllocatesNothing()
    {
        var robust = new HoltWinters(288, 0.1, 0.01, 0.1, trackedHorizon: 12, robustClip: 2);
        var rng = new Random(1);
        robust.Update(1);
        var before = GC.GetAllocatedBytesForCurrentThread();

        // Includes the robust start at the end of the first season.
        for (var t = 1; t < 288 * 3; t++)
        {
            robust.Update(100 + (10 * Math.Sin(t * 0.1)) + rng.NextDouble());
            robust.PredictionInterval(12);
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    private static double Seasonal(int t) => 100 + (20 * Math.Sin(2 * Math.PI * t / M));

    private static double Normal(Random rng)
        => Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());
}
