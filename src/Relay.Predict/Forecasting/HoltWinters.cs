namespace Relay.Predict.Forecasting;

/// <summary>
/// Additive Holt-Winters (ETS(A,A,A)) with season length m, O(1) and allocation-free per sample
/// (the season and the pending-forecast ring are allocated once, here).
/// </summary>
/// <remarks>
/// Prediction intervals come in two flavours:
/// <list type="bullet">
/// <item>theoretical, from the ETS(A,A,A) variance σ²[1 + Σ c_j²], c_j = α + βj + γ·[j mod m = 0];</item>
/// <item>calibrated at one tracked horizon H: the half-width is q times the running mean absolute
/// horizon-H error, and every interval issued H steps ago is scored when its actual arrives:
/// q grows by <see cref="QuantileStep"/>·c on a miss and shrinks by <see cref="QuantileStep"/>·(1-c)
/// on a hit (adaptive conformal inference, Gibbs and Candès, NeurIPS 2021, on the error
/// normalised by its running scale). Over any n scored steps the share of misses is then
/// 1-c + Δq/(n·step), whatever the errors look like. Real series are not Gaussian, so this is
/// the interval the scaling advisor uses.</item>
/// </list>
/// With a finite <see cref="RobustClip"/> the model is the robust Holt-Winters of Gelper, Fried
/// and Croux (J. Forecasting 29, 2010): the first season starts it from its median with the
/// seasonals clipped at k·MAD, and every later observation is cleaned before it updates level,
/// trend and season (see <see cref="RobustClip"/>).
/// </remarks>
public sealed class HoltWinters
{
    private readonly double[] _season;
    private readonly double[] _pending;
    private readonly double[] _pendingHalfWidth;
    private readonly double[]? _initScratch;
    private double _level;
    private double _trend;
    private double _residualVariance;
    private long _count;
    private int _next;
    private double _initSum;
    private double _halfWidth;
    private double _meanAbsError;
    private double _quantile;
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
        _pendingHalfWidth = new double[trackedHorizon];
        _initScratch = double.IsFinite(robustClip) ? new double[seasonLength] : null;
    }

    public int SeasonLength { get; }

    /// <summary>Robust Holt-Winters (Gelper, Fried and Croux, J. Forecasting 2010) with Huber's ψ
    /// clipped at k = this value: each observation is replaced by ŷ + clamp(y − ŷ, ±k·σ̂) before it
    /// updates level, trend and season, σ̂ being a running mean absolute one-step error of the
    /// cleaned errors; the first season starts the model from its median, its seasonals clipped at
    /// ± k·1.4826·MAD. So a spike neither shifts the level nor repeats every season, in the first
    /// season or later; a lasting shift is followed, more slowly than by the classic model (σ̂
    /// grows by at most a factor 1 + 0.05·(k − 1) a step). Infinity (the default) is classic
    /// Holt-Winters.</summary>
    /// <remarks>A first season that is more than half one value (MAD 0) starts with a flat season;
    /// the pattern is then learnt at most γ·k·σ̂ a season.</remarks>
    public double RobustClip { get; }

    public double Alpha { get; }

    public double Beta { get; }

    public double Gamma { get; }

    public int TrackedHorizon { get; }

    public double Coverage { get; }

    /// <summary>How far one scored forecast moves the calibrated interval's multiplier q (the
    /// half-width is q running mean absolute horizon errors).</summary>
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
                if (_initScratch is not null)
                {
                    StartRobustly(_initScratch);
                }
                else
                {
                    _level = _initSum / m;
                    for (var i = 0; i < m; i++)
                    {
                        _season[i] -= _level;
                    }
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
        if (_initScratch is not null)
        {
            if (_oneStepScale > 0)
            {
                // Huber's ψ: y* = ŷ + σ̂·ψ((y − ŷ)/σ̂); σ̂ follows the cleaned errors.
                var limit = RobustClip * _oneStepScale;
                error = Math.Clamp(error, -limit, limit);
                _oneStepScale += 0.05 * (Math.Abs(error) - _oneStepScale);
            }
            else
            {
                // No spread seen yet (a constant start): nothing to judge an error against, so
                // the first non-zero one is taken as it is and sets the scale.
                _oneStepScale = Math.Abs(error);
            }

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
        var half = HalfWidth(steps);
        return (f - half, f + half);
    }

    private double HalfWidth(int steps)
        => steps == TrackedHorizon && _scored >= TrackedHorizon
            ? _halfWidth
            : NormalQuantile(0.5 + (Coverage / 2.0)) * ForecastStdDev(steps);

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
            // Start from the normal ratio of the quantile to the mean absolute error.
            _meanAbsError = absError;
            _quantile = NormalQuantile(0.5 + (Coverage / 2.0)) / Math.Sqrt(2.0 / Math.PI);
        }
        else
        {
            // Score the interval that was issued with this forecast, not today's.
            var miss = absError > _pendingHalfWidth[slot] ? 1.0 : 0.0;
            _quantile = Math.Max(0.0, _quantile + (QuantileStep * (miss - (1.0 - Coverage))));
            _meanAbsError += 0.02 * (absError - _meanAbsError);
        }

        _halfWidth = _quantile * _meanAbsError;
    }

    private void StorePending()
    {
        // The forecast for the sample TrackedHorizon steps from now sits in the slot that
        // sample's index will read, with the half-width PredictionInterval gives for it now.
        var slot = (int)((_count + TrackedHorizon - 1) % TrackedHorizon);
        _pending[slot] = IsReady ? Forecast(TrackedHorizon) : double.NaN;
        _pendingHalfWidth[slot] = IsReady ? HalfWidth(TrackedHorizon) : double.NaN;
    }

    /// <summary>Robust start (Gelper et al. start from a robust fit of the first observations):
    /// level = median of the first season, seasonals = deviations clipped at ± k·1.4826·MAD,
    /// one-step scale from the median absolute successive difference (for white noise of
    /// standard deviation σ that median is 0.954σ; a mean absolute error is 0.798σ).</summary>
    private void StartRobustly(double[] scratch)
    {
        var m = SeasonLength;
        var values = _season.AsSpan();
        values.CopyTo(scratch);
        _level = Median(scratch);

        double sumDiff = 0;
        for (var i = 1; i < m; i++)
        {
            scratch[i - 1] = Math.Abs(values[i] - values[i - 1]);
            sumDiff += scratch[i - 1];
        }

        var medianDiff = Median(scratch.AsSpan(0, m - 1));
        _oneStepScale = medianDiff > 0 ? medianDiff * (0.7979 / 0.9539) : sumDiff / (m - 1) / Math.Sqrt(2.0);

        for (var i = 0; i < m; i++)
        {
            scratch[i] = Math.Abs(values[i] - _level);
        }

        var limit = RobustClip * 1.4826 * Median(scratch);
        for (var i = 0; i < m; i++)
        {
            values[i] = Math.Clamp(values[i] - _level, -limit, limit);
        }
    }

    /// <summary>Median of <paramref name="values"/>, which it sorts in place (no allocation).</summary>
    private static double Median(Span<double> values)
    {
        values.Sort();
        var n = values.Length;
        return (n & 1) == 1 ? values[n / 2] : 0.5 * (values[(n / 2) - 1] + values[n / 2]);
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
