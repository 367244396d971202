namespace Relay.Transport.Paths;

/// <summary>Holt's linear exponential smoothing (an EWMA of the level plus an EWMA of the trend).</summary>
internal struct Holt
{
    private const double Alpha = 0.3;
    private const double Beta = 0.1;

    private double _level;
    private double _trend;
    private bool _any;

    public readonly double Level => _level;

    public void Add(double sample)
    {
        if (!_any)
        {
            _level = sample;
            _trend = 0;
            _any = true;
            return;
        }

        var previous = _level;
        _level = (Alpha * sample) + ((1 - Alpha) * (_level + _trend));
        _trend = (Beta * (_level - previous)) + ((1 - Beta) * _trend);
    }

    /// <summary>The value <paramref name="steps"/> samples ahead.</summary>
    public readonly double Forecast(double steps = 1) => _any ? _level + (steps * _trend) : 0;
}
