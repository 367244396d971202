namespace Relay.Predict.Forecasting;

/// <summary>
/// Exponentially weighted moving average with a time constant, so irregular samples decay by
/// the time between them (weight 1 - e^(-dt/tau)). A mutable struct: keep it in a field and
/// update it in place; copying it copies the state.
/// </summary>
public struct Ewma
{
    private double _value;
    private double _lastSeconds;
    private bool _initialised;

    public Ewma(double tauSeconds)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(tauSeconds);
        TauSeconds = tauSeconds;
    }

    public double TauSeconds { get; }

    public readonly bool HasValue => _initialised;

    public readonly double Value => _initialised ? _value : double.NaN;

    /// <summary>Adds a sample; non-finite values and timestamps are ignored (returns false).
    /// A timestamp earlier than the last one is treated as simultaneous.</summary>
    public bool Update(double value, double nowSeconds)
    {
        if (!double.IsFinite(value) || !double.IsFinite(nowSeconds))
        {
            return false;
        }

        if (!_initialised)
        {
            _value = value;
            _lastSeconds = nowSeconds;
            _initialised = true;
            return true;
        }

        var dt = Math.Max(0.0, nowSeconds - _lastSeconds);
        var weight = 1.0 - Math.Exp(-dt / TauSeconds);
        _value += weight * (value - _value);
        _lastSeconds = Math.Max(_lastSeconds, nowSeconds);
        return true;
    }

    public void Reset()
    {
        _initialised = false;
        _value = 0.0;
    }
}

/// <summary>
/// Peak-EWMA (Finagle/Linkerd load balancing): a sample above the current value replaces it at
/// once; lower samples pull it down with time constant tau. It remembers spikes (pauses,
/// latency peaks) for about tau while still forgetting them.
/// </summary>
public struct PeakEwma
{
    private double _value;
    private double _lastSeconds;
    private bool _initialised;

    public PeakEwma(double tauSeconds)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(tauSeconds);
        TauSeconds = tauSeconds;
    }

    public double TauSeconds { get; }

    public readonly bool HasValue => _initialised;

    public readonly double Value => _initialised ? _value : double.NaN;

    /// <summary>The value decayed to <paramref name="nowSeconds"/> towards <paramref name="floor"/>
    /// without recording a sample.</summary>
    public readonly double ValueAt(double nowSeconds, double floor)
    {
        if (!_initialised)
        {
            return double.NaN;
        }

        var dt = Math.Max(0.0, nowSeconds - _lastSeconds);
        return floor + ((_value - floor) * Math.Exp(-dt / TauSeconds));
    }

    public bool Update(double value, double nowSeconds)
    {
        if (!double.IsFinite(value) || !double.IsFinite(nowSeconds))
        {
            return false;
        }

        if (!_initialised || value >= _value)
        {
            _value = value;
            _lastSeconds = _initialised ? Math.Max(_lastSeconds, nowSeconds) : nowSeconds;
            _initialised = true;
            return true;
        }

        var dt = Math.Max(0.0, nowSeconds - _lastSeconds);
        var weight = 1.0 - Math.Exp(-dt / TauSeconds);
        _value += weight * (value - _value);
        _lastSeconds = Math.Max(_lastSeconds, nowSeconds);
        return true;
    }
}
