namespace Relay.Predict.Forecasting;

/// <summary>Small numeric helpers shared by the models; all allocation-free.</summary>
public static class ForecastMath
{
    /// <summary>z for a two-sided 80% interval (the 0.9 quantile of the standard normal).</summary>
    public const double Z80 = 1.2815515655446004;

    /// <summary>Standard normal CDF.</summary>
    public static double NormalCdf(double z)
    {
        if (double.IsNaN(z))
        {
            return double.NaN;
        }

        return 0.5 * Erfc(-z / Math.Sqrt(2.0));
    }

    /// <summary>P(X &gt; limit) for X ~ N(mean, stdDev²); a zero or invalid spread gives a step.</summary>
    public static double ProbabilityAbove(double mean, double stdDev, double limit)
    {
        if (!double.IsFinite(mean) || !double.IsFinite(limit))
        {
            return 0.0;
        }

        if (!(stdDev > 0.0) || !double.IsFinite(stdDev))
        {
            return mean > limit ? 1.0 : 0.0;
        }

        // Beyond 8.3 σ the answer is 0 or 1 to double precision; skip the exp (most calls on a
        // healthy fleet land here, measured in ScoringBenchmarks).
        var z = (limit - mean) / stdDev;
        if (z > 8.3)
        {
            return 0.0;
        }

        if (z < -8.3)
        {
            return 1.0;
        }

        return 1.0 - NormalCdf(z);
    }

    /// <summary>Logistic function 1/(1+e^-x), clamped to avoid overflow.</summary>
    public static double Logistic(double x)
    {
        if (double.IsNaN(x))
        {
            return 0.0;
        }

        x = Math.Clamp(x, -40.0, 40.0);
        return 1.0 / (1.0 + Math.Exp(-x));
    }

    /// <summary>Complementary error function, Chebyshev fit with fractional error below 1.2e-7
    /// everywhere (the classic erfcc fit); good enough for probabilities fed to thresholds.</summary>
    public static double Erfc(double x)
    {
        var z = Math.Abs(x);
        var t = 1.0 / (1.0 + (0.5 * z));
        var poly = -1.26551223 + (t * (1.00002368 + (t * (0.37409196 + (t * (0.09678418
            + (t * (-0.18628806 + (t * (0.27886807 + (t * (-1.13520398
            + (t * (1.48851587 + (t * (-0.82215223 + (t * 0.17087277)))))))))))))))));
        var ans = t * Math.Exp((-z * z) + poly);
        return x >= 0.0 ? ans : 2.0 - ans;
    }
}
