namespace Relay.Predict.Forecasting;

/// <summary>
/// Holt's linear trend (ETS(A,A,N)) on a regularly sampled series, with the one-step residual
/// variance tracked by an EWMA so a forecast comes with its spread. O(1) and allocation-free per
/// sample. A mutable struct: keep it in a field.
/// </summary>
/// <remarks>
/// Forecast variance at horizon h uses the ETS(A,A,N) closed form
/// σ²[1 + (h-1)(α² + αβh + β²h(2h-1)/6)] (Hyndman et al., Forecasting with Exponential
/// Smoothing, 2008, table 6.1, class 1).
/// </remarks>
public struct HoltLinear
{
    private double _level;
    private double _trend;
    private double _residualVariance;
    private long _count;

    public HoltLinear(double alpha, double beta, double minStdDev, double varianceAlpha = 0.05)
    {
        if (!(alpha > 0 && alpha <= 1) || !(beta >= 0 && beta <= 1) || !(varianceAlpha > 0 && varianceAlpha <= 1))
        {
            throw new ArgumentOutOfRangeException(nameof(alpha), "alpha, varianceAlpha in (0,1], beta in [0,1].");
        }

        ArgumentOutOfRangeException.ThrowIfNegative(minStdDev);
        Alpha = alpha;
        Beta = beta;
        MinStdDev = minStdDev;
        VarianceAlpha = varianceAlpha;
    }

    public double Alpha { get; }

    public double Beta { get; }

    public double MinStdDev { get; }

    public double VarianceAlpha { get; }

    public readonly long Count => _count;

    public readonly double Level => _count > 0 ? _level : double.NaN;

    /// <summary>Trend per step.</summary>
    public readonly double Trend => _count > 1 ? _trend : 0.0;

    public readonly double ResidualStdDev => Math.Max(MinStdDev, Math.Sqrt(_residualVariance));

    /// <summary>Adds the next observation; non-finite values are ignored (returns false).</summary>
    public bool Update(double value)
    {
        if (!double.IsFinite(value))
        {
            return false;
        }

        if (_count == 0)
        {
            _level = value;
            _trend = 0.0;
            _count = 1;
            return true;
        }

        var predicted = _level + _trend;
        var error = value - predicted;
        if (_count >= 2)
        {
            _residualVariance += VarianceAlpha * ((error * error) - _residualVariance);
        }
        else
        {
            _residualVariance = error * error;
        }

        var previous = _level;
        _level = predicted + (Alpha * error);
        _trend += Beta * (_level - previous - _trend);
        _count++;
        return true;
    }

    /// <summary>Point forecast h steps ahead (NaN before the first sample).</summary>
    public readonly double Forecast(double steps) => _count == 0 ? double.NaN : _level + (steps * Trend);

    /// <summary>Standard deviation of the h-step forecast error.</summary>
    public readonly double ForecastStdDev(double steps)
    {
        var h = Math.Max(1.0, steps);
        var a = Alpha;
        var b = Beta;
        var factor = 1.0 + ((h - 1.0) * ((a * a) + (a * b * h) + (b * b * h * ((2.0 * h) - 1.0) / 6.0)));
        return ResidualStdDev * Math.Sqrt(factor);
    }

    /// <summary>P(value h steps ahead &gt; limit) under a normal forecast error.</summary>
    public readonly double ProbabilityAbove(double limit, double steps)
        => _count == 0 ? 0.0 : ForecastMath.ProbabilityAbove(Forecast(steps), ForecastStdDev(steps), limit);

    public void Reset()
    {
        _count = 0;
        _level = 0;
        _trend = 0;
        _residualVariance = 0;
    }
}
