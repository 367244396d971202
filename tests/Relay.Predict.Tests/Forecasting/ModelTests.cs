using Relay.Predict.Forecasting;
using Relay.Predict.Stability;

namespace Relay.Predict.Tests.Forecasting;

public class ModelTests
{
    [Fact]
    public void Ewma_DecaysByElapsedTime()
    {
        var ewma = new Ewma(tauSeconds: 1.0);
        ewma.Update(0, 0);
        ewma.Update(10, 1.0);
        Assert.Equal(10 * (1 - Math.Exp(-1)), ewma.Value, 9);
        Assert.False(ewma.Update(double.NaN, 2.0));
        Assert.Equal(10 * (1 - Math.Exp(-1)), ewma.Value, 9);
    }

    [Fact]
    public void PeakEwma_JumpsUpAndDecaysDown()
    {
        var peak = new PeakEwma(tauSeconds: 10.0);
        peak.Update(1.0, 0);
        peak.Update(5.0, 1);
        Assert.Equal(5.0, peak.Value);
        peak.Update(1.0, 11);
        Assert.Equal(1.0 + (4.0 * Math.Exp(-1)), peak.Value, 9);
    }

    [Fact]
    public void HoltLinear_LearnsTrendOfNoisyRamp()
    {
        var rng = new Random(42);
        var holt = new HoltLinear(0.3, 0.1, 0.0);
        for (var t = 0; t < 300; t++)
        {
            holt.Update((2.0 * t) + 10 + ((rng.NextDouble() - 0.5) * 4));
        }

        Assert.InRange(holt.Trend, 1.9, 2.1);
        Assert.InRange(holt.Forecast(10), (2.0 * 309) + 10 - 5, (2.0 * 309) + 10 + 5);
        Assert.True(holt.ForecastStdDev(30) > holt.ForecastStdDev(1));
        Assert.True(holt.ProbabilityAbove(650, 30) > 0.5);
        Assert.True(holt.ProbabilityAbove(800, 30) < 0.01);
    }

    [Fact]
    public void HoltWinters_BeatsSeasonalNaiveAndCalibratesInterval()
    {
        var rng = new Random(7);
        const int m = 24;
        var hw = new HoltWinters(m, 0.2, 0.01, 0.1, trackedHorizon: 2);
        var naive = new SeasonalNaive(m);
        double hwError = 0, naiveError = 0;
        int scored = 0, covered = 0;
        var pendingHw = new double[2];
        var pendingLo = new double[2];
        var pendingHi = new double[2];
        var pendingNaive = new double[2];
        for (var t = 0; t < 24 * 200; t++)
        {
            var level = 100 + (0.01 * t) + (20 * Math.Sin(2 * Math.PI * t / m));
            var x = level + (Normal(rng) * 3);
            if (t >= 24 * 20)
            {
                var slot = t % 2;
                hwError += Math.Abs(x - pendingHw[slot]);
                naiveError += Math.Abs(x - pendingNaive[slot]);
                covered += x >= pendingLo[slot] && x <= pendingHi[slot] ? 1 : 0;
                scored++;
            }

            hw.Update(x);
            naive.Update(x);
            var next = (t + 2) % 2;
            pendingHw[next] = hw.Forecast(2);
            pendingNaive[next] = naive.Forecast(2);
            (pendingLo[next], pendingHi[next]) = hw.PredictionInterval(2);
        }

        Assert.True(hwError / naiveError < 0.8, $"MASE vs seasonal naive {hwError / naiveError:F3}");
        var coverage = (double)covered / scored;
        Assert.InRange(coverage, 0.75, 0.85);
    }

    [Fact]
    public void HoltWinters_RobustClipKeepsASpikeOutOfTheSeason()
    {
        const int m = 24;
        var classic = new HoltWinters(m, 0.2, 0.0, 0.4);
        var robust = new HoltWinters(m, 0.2, 0.0, 0.4, robustClip: 3);
        var rng = new Random(9);
        for (var t = 0; t < m * 20; t++)
        {
            var x = 100 + (10 * Math.Sin(2 * Math.PI * t / m)) + rng.NextDouble();
            if (t == m * 19)
            {
                x += 10_000;   // one wild sample
            }

            classic.Update(x);
            robust.Update(x);
        }

        // The next sample (t = 20m) has the spike's phase: the classic model repeats a large part
        // of the spike there, the robust one stays near the seasonal pattern (sin(0) → ~100).
        Assert.True(classic.Forecast(1) - 100 > 500, $"classic {classic.Forecast(1):F0}");
        Assert.True(Math.Abs(robust.Forecast(1) - 100) < 30, $"robust {robust.Forecast(1):F0}");
    }

    [Fact]
    public void SeasonalNaive_ReturnsValueOneSeasonBack()
    {
        var naive = new SeasonalNaive(4);
        for (var i = 0; i < 10; i++)
        {
            naive.Update(i);
        }

        // Last value 9 at t=9; t+1=10 → value at 6; t+4=13 → value at 9; t+5=14 → value at 6.
        Assert.Equal(6, naive.Forecast(1));
        Assert.Equal(9, naive.Forecast(4));
        Assert.Equal(6, naive.Forecast(5));
    }

    [Fact]
    public void PageHinkley_DetectsShiftNotNoise()
    {
        var rng = new Random(3);
        var ph = new PageHinkley(delta: 0.05, lambda: 5);
        var alarmsBefore = 0;
        for (var i = 0; i < 500; i++)
        {
            alarmsBefore += ph.Update(Normal(rng) * 0.1) ? 1 : 0;
        }

        var detectedAfter = -1;
        for (var i = 0; i < 200 && detectedAfter < 0; i++)
        {
            if (ph.Update(1.0 + (Normal(rng) * 0.1)))
            {
                detectedAfter = i;
            }
        }

        Assert.Equal(0, alarmsBefore);
        Assert.InRange(detectedAfter, 0, 20);
    }

    [Fact]
    public void Cusum_DetectsShiftNotNoise()
    {
        var rng = new Random(5);
        var cusum = new Cusum(k: 0.5, h: 8, warmup: 50);
        var alarmsBefore = 0;
        for (var i = 0; i < 500; i++)
        {
            alarmsBefore += cusum.Update(Normal(rng)) ? 1 : 0;
        }

        var detectedAfter = -1;
        for (var i = 0; i < 100 && detectedAfter < 0; i++)
        {
            if (cusum.Update(2.0 + Normal(rng)))
            {
                detectedAfter = i;
            }
        }

        Assert.Equal(0, alarmsBefore);
        Assert.InRange(detectedAfter, 0, 15);
    }

    [Fact]
    public void Phi_RisesWithSilenceAndMatchesAkkaFormula()
    {
        var phi = new PhiAccrualDetector(new PhiAccrualOptions { AcceptableHeartbeatPauseSeconds = 0, MinStdDeviationSeconds = 0.01, FirstHeartbeatEstimateSeconds = 0.2 });
        var t = 0.0;
        for (var i = 0; i < 100; i++)
        {
            phi.Heartbeat(t);
            t += 0.2;
        }

        var last = t - 0.2;
        Assert.True(phi.Phi(last + 0.1) < 0.5);
        Assert.True(phi.Phi(last + 0.3) > phi.Phi(last + 0.25));
        Assert.True(phi.Phi(last + 1.0) > 8);

        // Akka: phi = -log10(e/(1+e)), e = exp(-y(1.5976 + 0.070566 y²)) for elapsed > mean.
        var y = 2.0;
        var e = Math.Exp(-y * (1.5976 + (0.070566 * y * y)));
        Assert.Equal(-Math.Log10(e / (1 + e)), PhiAccrualDetector.PhiOf(1.2, 1.0, 0.1), 9);
    }

    [Fact]
    public void Phi_DefaultsSeparateCrashFromHalfSecondPause()
    {
        var options = new PhiAccrualOptions();
        var rng = new Random(11);
        foreach (var interval in new[] { 0.1, 0.25 })
        {
            var phi = new PhiAccrualDetector(options);
            var t = 0.0;
            for (var i = 0; i < 300; i++)
            {
                phi.Heartbeat(t);
                t += interval * (0.9 + (0.2 * rng.NextDouble()));
            }

            var last = phi.LastHeartbeatSeconds;
            Assert.True(phi.Phi(last + interval + 0.5) < options.Threshold, $"500 ms pause at {interval}s");
            Assert.True(phi.Phi(last + 1.1) >= options.Threshold, $"crash at {interval}s");
        }
    }

    [Fact]
    public void Phi_RejectsOutOfOrderAndNaN()
    {
        var phi = new PhiAccrualDetector(new PhiAccrualOptions());
        Assert.True(phi.Heartbeat(10));
        Assert.False(phi.Heartbeat(9));
        Assert.False(phi.Heartbeat(double.NaN));
        Assert.Equal(10, phi.LastHeartbeatSeconds);
    }

    internal static double Normal(Random rng)
    {
        var u1 = 1.0 - rng.NextDouble();
        var u2 = rng.NextDouble();
        return Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2.0 * Math.PI * u2);
    }
}
