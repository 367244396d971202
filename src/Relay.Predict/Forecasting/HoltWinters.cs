namespace Relay.Predict.Forecasting;

/// <summary>
/// Additive Holt-Winters (ETS(A,A,A)) with season length m, O(1) and allocation-free per sample
/// (the season and the pending-forecast ring are allocated once, here).
/// </summary>
/// <remarks>
/// Prediction intervals come in two flavours:
/// <list type="bullet">
/// <item>theoretical, from the ETS(A,A,A) variance σ²[1 + Σ c_j²], c_j = α + βj + γ·[j mod m = 0];</item>
/// <item>calibrated at one tracked horizon H: every forecast made H steps ago is scored when
/// its actual arrives, and the half-width is the running (1-c) quantile of |error| tracked by
/// stochastic approximation (adaptive conformal inference, Gibbs and Candès, NeurIPS 2021).
/// Real series are not Gaussian, so this is the interval the scaling advisor uses.</item>
/// </list>
/// </remarks>
public sealed class HoltWinters
{
    private readonly double[] _season;
    private readonly double[] _pending;
    private double _level;
    private double _trend;
    private double _residualVariance;
    private long _count;
    private int _next;
    private double _initSum;
    private double _halfWidth;
    private double _meanAbsError;
    private long _scored;
    private double _oneStepScale;

    public HoltWinters(int seasonLength, double alpha, double beta, double gamma, int trackedHorizon = 1, double coverage = 0.8, double quantileStep = 0.05, double robustClip = double.PositiveInfinity)
    {
        if (!(robustClip > 0))
        {
            throw new ArgumentOutOfRangeException(nameof(robustClip));
        }

        RobustClip = robustClip;
        ArgumentOutOfRangeException.ThrowIfLessThan(seasonLength, 2);
        ArgumentOutOfRangeException.ThrowIfLessThan(trackedHorizon, 1);
        if (!(alpha > 0 && alpha <= 1) || !(beta >= 0 && beta <= 1) || !(gamma >= 0 && gamma <= 1))
        {
            throw new ArgumentOutOfRangeException(nameof(alpha), "alpha in (0,1], beta and gamma in [0,1].");
        }

        if (!(coverage > 0 && coverage < 1))
        {
            throw new ArgumentOutOfRangeException(nameof(coverage));
        }

        SeasonLength = seasonLength;
        Alpha = alpha;
        Beta = beta;
        Gamma = gamma;
        TrackedHorizon = trackedHorizon;
        Coverage = coverage;
        QuantileStep = quantileStep;
        _season = new double[seasonLength];
        _pending = new double[trackedHorizon];
        _pending.AsSpan().Fill(double.NaN);
    }

    public int SeasonLength { get; }

    /// <summary>Robust updating (Gelper, Fried and Croux, J. Forecasting 2010, in spirit): the
    /// one-step error that drives the level, trend and season is clipped to ± this many running
    /// mean absolute errors, so one spike neither shifts the level nor repeats every season.
    /// Infinity (the default) is classic Holt-Winters.</summary>
    public double RobustClip { get; }

    public double Alpha { get; }

    public double Beta { get; }

    public double Gamma { get; }

    public int TrackedHorizon { get; }

    public double Coverage { get; }

    public double QuantileStep { get; }

    public long Count => _count;

    /// <summary>True once a full season has been seen; forecasts before that are naive.</summary>
    public bool IsReady => _count >= SeasonLength;

    public double Level => _level;

    public double Trend => _trend;

    public double ResidualStdDev => Math.Sqrt(_residualVariance);

    /// <summary>Half-width of the calibrated interval at <see cref="TrackedHorizon"/>.</summary>
    public double CalibratedHalfWidth => _scored > 0 ? _halfWidth : double.NaN;

    public bool Update(double value)
    {
        if (!double.IsFinite(value))
        {
            return false;
        }

        ScorePending(value);
        var m = SeasonLength;
        if (_count < m)
        {
            // First season: collect, then set level to its mean and seasonals to deviations.
            _season[_count] = value;
            _initSum += value;
            _count++;
            _level = value;
            if (_count == m)
            {
                _level = _initSum / m;
                for (var i = 0; i < m; i++)
                {
                    _season[i] -= _level;
                }

                _trend = 0.0;
                _next = 0;
            }

            StorePending();
            return true;
        }

        var seasonal = _season[_next];
        var predicted = _level + _trend + seasonal;
        var error = value - predicted;
        if (double.IsFinite(RobustClip))
        {
            if (_count == m)
            {
                _oneStepScale = Math.Abs(error);
            }

            var limit = RobustClip * Math.Max(_oneStepScale, 1e-12);
            var clipped = Math.Clamp(error, -limit, limit);
            _oneStepScale += 0.05 * (Math.Abs(clipped) - _oneStepScale);
            error = clipped;
            value = predicted + error;
        }

        _residualVariance = _count == m ? error * error : _residualVariance + (0.02 * ((error * error) - _residualVariance));
        var previous = _level;
        _level = (Alpha * (value - seasonal)) + ((1 - Alpha) * (_level + _trend));
        _trend = (Beta * (_level - previous)) + ((1 - Beta) * _trend);
        _season[_next] = (Gamma * (value - _level)) + ((1 - Gamma) * seasonal);
        _next = (_next + 1) % m;
        _count++;
        StorePending();
        return true;
    }

    /// <summary>Point forecast h ≥ 1 steps ahead (before a full season: the last value).</summary>
    public double Forecast(int steps)
    {
        if (_count == 0)
        {
            return double.NaN;
        }

        if (!IsReady)
        {
            return _level;
        }

        var h = Math.Max(1, steps);
        return _level + (h * _trend) + _season[(_next + ((h - 1) % SeasonLength)) % SeasonLength];
    }

    /// <summary>Theoretical ETS(A,A,A) forecast standard deviation at h steps.</summary>
    public double ForecastStdDev(int steps)
    {
        var h = Math.Max(1, steps);
        double n = h - 1;
        var a = Alpha;
        var b = Beta;
        var sum = (n * a * a) + (a * b * n * (n + 1)) + (b * b * n * (n + 1) * ((2 * n) + 1) / 6.0);
        var k = (h - 1) / SeasonLength;
        if (k > 0)
        {
            var m = (double)SeasonLength;
            sum += (2 * Gamma * ((a * k) + (b * m * k * (k + 1) / 2.0))) + (k * Gamma * Gamma);
        }

        return ResidualStdDev * Math.Sqrt(1.0 + sum);
    }

    /// <summary>80%-style interval at h: calibrated when h is the tracked horizon and scored,
    /// theoretical (normal, same coverage) otherwise.</summary>
    public (double Lower, double Upper) PredictionInterval(int steps)
    {
        var f = Forecast(steps);
        double half;
        if (steps == TrackedHorizon && _scored >= TrackedHorizon)
        {
            half = _halfWidth;
        }
        else
        {
            half = NormalQuantile(0.5 + (Coverage / 2.0)) * ForecastStdDev(steps);
        }

        return (f - half, f + half);
    }

    private void ScorePending(double actual)
    {
        var slot = (int)(_count % TrackedHorizon);
        var forecast = _pending[slot];
        if (double.IsNaN(forecast))
        {
            return;
        }

        var absError = Math.Abs(actual - forecast);
        _scored++;
        if (_scored == 1)
        {
            _meanAbsError = absError;
            _halfWidth = 1.28 * absError;
            return;
        }

        _meanAbsError += 0.02 * (absError - _meanAbsError);
        var scale = Math.Max(_meanAbsError, 1e-12);
        var miss = absError > _halfWidth ? 1.0 : 0.0;
        _halfWidth = Math.Max(0.0, _halfWidth + (QuantileStep * scale * (miss - (1.0 - Coverage))));
    }

    private void StorePending()
    {
        // The forecast for the sample TrackedHorizon steps from now sits in the slot that
        // sample's index will read.
        var slot = (int)((_count + TrackedHorizon - 1) % TrackedHorizon);
        _pending[slot] = IsReady ? Forecast(TrackedHorizon) : double.NaN;
    }

    /// <summary>Acklam-style rational approximation would be overkill here: only a few fixed
    /// coverages are used, so bisection on the CDF (60 steps, no allocation) is enough.</summary>
    private static double NormalQuantile(double p)
    {
        double lo = -10, hi = 10;
        for (var i = 0; i < 60; i++)
        {
            var mid = 0.5 * (lo + hi);
            if (ForecastMath.NormalCdf(mid) < p)
            {
                lo = mid;
            }
            else
            {
                hi = mid;
            }
        }

        return 0.5 * (lo + hi);
    }
}

/// <summary>Seasonal-naive forecaster: the value one season before the target. The baseline
/// for MASE.</summary>
public sealed class SeasonalNaive
{
    private readonly double[] _history;
    private long _count;

    public SeasonalNaive(int seasonLength)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(seasonLength, 1);
        _history = new double[seasonLength];
    }

    public int SeasonLength => _history.Length;

    public bool IsReady => _count >= _history.Length;

    public bool Update(double value)
    {
        if (!double.IsFinite(value))
        {
            return false;
        }

        _history[_count % _history.Length] = value;
        _count++;
        return true;
    }

    /// <summary>ŷ(t+h) = y(t+h-km), k the smallest whole number of seasons with km ≥ h.</summary>
    public double Forecast(int steps)
    {
        var m = _history.Length;
        if (_count < m)
        {
            return _count == 0 ? double.NaN : _history[(_count - 1) % m];
        }

        var h = Math.Max(1, steps);
        var back = m - ((h - 1) % m);      // index distance from the next slot
        var index = (_count - back) % m;
        return _history[index];
    }
}
