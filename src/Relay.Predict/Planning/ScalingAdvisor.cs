using Relay.Predict.Forecasting;

namespace Relay.Predict.Planning;

/// <summary>Options of <see cref="ScalingAdvisor"/>.</summary>
public sealed record ScalingOptions
{
    /// <summary>Aggregation step of the arrival and concurrency series. <remarks>Defaults to 60 s.</remarks></summary>
    public double StepSeconds { get; init; } = 60;

    /// <summary>Steps per season. <remarks>Defaults to 1440 (one day of minutes).</remarks></summary>
    public int SeasonLength { get; init; } = 1440;

    /// <summary>Time a new endpoint needs to become useful: scale-out looks this far ahead.
    /// <remarks>Defaults to 300 s.</remarks></summary>
    public double LeadTimeSeconds { get; init; } = 300;

    /// <summary>Concurrent sessions one endpoint carries at 100%. <remarks>Defaults to 100.</remarks></summary>
    public double CapacityPerEndpoint { get; init; } = 100;

    /// <summary><remarks>Defaults to 0.7.</remarks></summary>
    public double TargetUtilisation { get; init; } = 0.7;

    /// <summary>Scale-in takes the highest recommendation of this window, as Kubernetes' HPA
    /// does with its scale-down stabilisation window. <remarks>Defaults to 600 s.</remarks></summary>
    public double ScaleInStabilisationSeconds { get; init; } = 600;

    public int MinEndpoints { get; init; } = 1;

    public int MaxEndpoints { get; init; } = 1000;

    public double Alpha { get; init; } = 0.3;

    public double Beta { get; init; } = 0.01;

    public double Gamma { get; init; } = 0.1;

    public void Validate(string argumentName)
    {
        if (!(StepSeconds > 0) || SeasonLength < 2 || !(LeadTimeSeconds >= 0) || !(CapacityPerEndpoint > 0) || !(TargetUtilisation > 0 && TargetUtilisation <= 1)
            || !(ScaleInStabilisationSeconds >= 0) || MinEndpoints < 0 || MaxEndpoints < Math.Max(1, MinEndpoints))
        {
            throw new ArgumentException("ScalingOptions out of range.", argumentName);
        }
    }
}

public enum ScalingDirection
{
    Hold,
    ScaleOut,
    ScaleIn,
}

/// <summary>Why the advisor recommends what it does.</summary>
public enum ScalingBasis
{
    /// <summary>Not enough history for a seasonal forecast: decided on observed load only.</summary>
    ObservedOnly,

    /// <summary>The upper 80% bound of the forecast at the lead time needs more endpoints.</summary>
    Forecast,

    /// <summary>Observed load needs more endpoints now.</summary>
    Observed,

    /// <summary>Observed and forecast load have both needed fewer endpoints for the whole
    /// stabilisation window.</summary>
    Stabilised,
}

public readonly record struct ScalingRecommendation(
    int Current,
    int Desired,
    ScalingDirection Direction,
    ScalingBasis Basis,
    double ObservedConcurrency,
    double ForecastConcurrency,
    double ForecastUpper,
    double LeadTimeSeconds);

/// <summary>
/// Per-route scaling: Holt-Winters forecasts of concurrency (and of arrivals, reported for
/// insight) give scale-out ahead of demand by the lead time; scale-in needs the observed load
/// and the forecast to agree for the whole stabilisation window, so it never happens on a
/// forecast alone. O(1) per sample, allocation-free after construction.
/// </summary>
public sealed class ScalingAdvisor
{
    private readonly ScalingOptions _options;
    private readonly HoltWinters _concurrency;
    private readonly HoltWinters _arrivals;
    private readonly int[] _window;
    private readonly int _leadSteps;
    private int _windowNext;
    private int _windowCount;
    private double _stepStart = double.NaN;
    private double _concurrencySum;
    private double _arrivalSum;
    private int _samples;
    private double _lastConcurrency = double.NaN;

    public ScalingAdvisor(ScalingOptions? options = null)
    {
        _options = options ?? new ScalingOptions();
        _options.Validate(nameof(options));
        _leadSteps = Math.Max(1, (int)Math.Ceiling(_options.LeadTimeSeconds / _options.StepSeconds));
        _concurrency = new HoltWinters(_options.SeasonLength, _options.Alpha, _options.Beta, _options.Gamma, trackedHorizon: _leadSteps);
        _arrivals = new HoltWinters(_options.SeasonLength, _options.Alpha, _options.Beta, _options.Gamma, trackedHorizon: _leadSteps);
        _window = new int[Math.Max(1, (int)Math.Ceiling(_options.ScaleInStabilisationSeconds / _options.StepSeconds))];
    }

    public double ArrivalsForecastPerSecond => _arrivals.IsReady ? _arrivals.Forecast(_leadSteps) : double.NaN;

    /// <summary>Adds one observation; steps close when <paramref name="nowSeconds"/> passes them.</summary>
    public bool Observe(double nowSeconds, double arrivalsPerSecond, double concurrency)
    {
        if (!double.IsFinite(nowSeconds) || !double.IsFinite(arrivalsPerSecond) || !double.IsFinite(concurrency) || arrivalsPerSecond < 0 || concurrency < 0
            || nowSeconds < _stepStart)
        {
            return false;
        }

        if (double.IsNaN(_stepStart))
        {
            _stepStart = nowSeconds;
        }

        if (nowSeconds >= _stepStart + _options.StepSeconds)
        {
            CloseStep();
            _stepStart += _options.StepSeconds * Math.Floor((nowSeconds - _stepStart) / _options.StepSeconds);
        }

        _concurrencySum += concurrency;
        _arrivalSum += arrivalsPerSecond;
        _samples++;
        _lastConcurrency = concurrency;
        return true;
    }

    public ScalingRecommendation Recommend(int currentEndpoints)
    {
        var perEndpoint = _options.CapacityPerEndpoint * _options.TargetUtilisation;
        var observed = double.IsNaN(_lastConcurrency) ? 0 : _lastConcurrency;
        var needNow = Need(observed / perEndpoint);
        double forecast = double.NaN, upper = double.NaN;
        var basis = ScalingBasis.ObservedOnly;
        var desired = needNow;
        if (_concurrency.IsReady)
        {
            forecast = _concurrency.Forecast(_leadSteps);
            upper = _concurrency.PredictionInterval(_leadSteps).Upper;
            var needAhead = Need(upper / perEndpoint);
            desired = Math.Max(needNow, needAhead);
            basis = needAhead > needNow ? ScalingBasis.Forecast : ScalingBasis.Observed;
        }

        if (desired > currentEndpoints)
        {
            return new ScalingRecommendation(currentEndpoints, desired, ScalingDirection.ScaleOut, basis, observed, forecast, upper, _options.LeadTimeSeconds);
        }

        // Scale in: the window's highest need, and only once the window is full of evidence.
        if (desired < currentEndpoints && _windowCount == _window.Length && _concurrency.IsReady)
        {
            var windowMax = desired;
            for (var i = 0; i < _windowCount; i++)
            {
                windowMax = Math.Max(windowMax, _window[i]);
            }

            if (windowMax < currentEndpoints)
            {
                return new ScalingRecommendation(currentEndpoints, windowMax, ScalingDirection.ScaleIn, ScalingBasis.Stabilised, observed, forecast, upper, _options.LeadTimeSeconds);
            }
        }

        return new ScalingRecommendation(currentEndpoints, currentEndpoints, ScalingDirection.Hold, basis, observed, forecast, upper, _options.LeadTimeSeconds);
    }

    private int Need(double endpoints)
        => double.IsFinite(endpoints) ? Math.Clamp((int)Math.Ceiling(endpoints - 1e-9), _options.MinEndpoints, _options.MaxEndpoints) : _options.MaxEndpoints;

    private void CloseStep()
    {
        if (_samples == 0)
        {
            return;
        }

        var concurrency = _concurrencySum / _samples;
        _concurrency.Update(concurrency);
        _arrivals.Update(_arrivalSum / _samples);
        _concurrencySum = 0;
        _arrivalSum = 0;
        _samples = 0;

        // The step's need: the larger of what was observed and what is forecast, both must be
        // low across the window before scale-in.
        var perEndpoint = _options.CapacityPerEndpoint * _options.TargetUtilisation;
        var need = Need(concurrency / perEndpoint);
        if (_concurrency.IsReady)
        {
            need = Math.Max(need, Need(_concurrency.PredictionInterval(_leadSteps).Upper / perEndpoint));
        }

        _window[_windowNext] = need;
        _windowNext = (_windowNext + 1) % _window.Length;
        _windowCount = Math.Min(_windowCount + 1, _window.Length);
    }
}
