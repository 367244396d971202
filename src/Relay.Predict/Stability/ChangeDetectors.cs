namespace Relay.Predict.Stability;

/// <summary>
/// Page-Hinkley test for an increase of the mean: m_t = Σ (x_i - x̄_i - δ), alarm when
/// m_t - min m &gt; λ. O(1), allocation-free. A mutable struct: keep it in a field.
/// </summary>
public struct PageHinkley
{
    private double _mean;
    private double _cumulative;
    private double _minimum;
    private long _count;

    public PageHinkley(double delta, double lambda, int warmup = 30)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(delta);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(lambda);
        Delta = delta;
        Lambda = lambda;
        Warmup = warmup;
    }

    public double Delta { get; }

    public double Lambda { get; }

    public int Warmup { get; }

    public readonly double Statistic => _cumulative - _minimum;

    public readonly long Count => _count;

    /// <summary>Adds a sample and returns true while the statistic exceeds λ.</summary>
    public bool Update(double value)
    {
        if (!double.IsFinite(value))
        {
            return false;
        }

        _count++;
        _mean += (value - _mean) / _count;
        _cumulative += value - _mean - Delta;
        _minimum = Math.Min(_minimum, _cumulative);
        return _count > Warmup && _cumulative - _minimum > Lambda;
    }

    public void Reset()
    {
        _mean = 0;
        _cumulative = 0;
        _minimum = 0;
        _count = 0;
    }
}

/// <summary>
/// One-sided (upper) CUSUM in units of the warm-up standard deviation: S = max(0, S + z - k),
/// alarm when S &gt; h. The reference mean and deviation are learned from the first
/// <see cref="Warmup"/> samples and then frozen until <see cref="Reset"/>.
/// </summary>
public struct Cusum
{
    private double _mean;
    private double _m2;
    private double _sum;
    private long _count;

    public Cusum(double k, double h, int warmup = 30)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(k);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(h);
        ArgumentOutOfRangeException.ThrowIfLessThan(warmup, 2);
        K = k;
        H = h;
        Warmup = warmup;
    }

    public double K { get; }

    public double H { get; }

    public int Warmup { get; }

    public readonly double Statistic => _sum;

    public bool Update(double value)
    {
        if (!double.IsFinite(value))
        {
            return false;
        }

        if (_count < Warmup)
        {
            _count++;
            var d = value - _mean;
            _mean += d / _count;
            _m2 += d * (value - _mean);
            return false;
        }

        var sd = Math.Max(Math.Sqrt(_m2 / (_count - 1)), 1e-9);
        _sum = Math.Max(0.0, _sum + ((value - _mean) / sd) - K);
        return _sum > H;
    }

    public void Reset()
    {
        _mean = 0;
        _m2 = 0;
        _sum = 0;
        _count = 0;
    }
}
