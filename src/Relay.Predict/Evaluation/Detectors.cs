using Relay.Predict.Stability;

namespace Relay.Predict.Evaluation;

/// <summary>A failure detector replayed by the harness: events in, per-endpoint verdicts out.</summary>
public interface IFailureDetector
{
    public string Name { get; }

    public void Reset(Trace trace, TraceSettings settings);

    public void OnEvent(in TraceEvent e);

    public void Tick(double nowSeconds);

    public bool IsEvacuated(int endpoint);
}

/// <summary>Relay.Predict itself: <see cref="ClusterPredictor"/> fed with heartbeats, requests,
/// load, host metrics and notices.</summary>
public sealed class RelayDetector(PredictorOptions? options = null) : IFailureDetector
{
    private ClusterPredictor _predictor = new(options);
    private bool[] _wasEvacuated = [];

    public string Name => "Relay.Predict";

    public ClusterPredictor Predictor => _predictor;

    public void Reset(Trace trace, TraceSettings settings)
    {
        _predictor = new ClusterPredictor(options);
        _wasEvacuated = new bool[trace.Endpoints];
        Evacuations.Clear();
        var limits = new EndpointLimits { LatencySloSeconds = settings.LatencySloSeconds, ErrorRateLimit = settings.ErrorRateLimit, Capacity = settings.Capacity };
        for (var i = 0; i < trace.Endpoints; i++)
        {
            _predictor.AddEndpoint(trace.Zones[i], limits);
        }
    }

    public void OnEvent(in TraceEvent e)
    {
        switch (e.Kind)
        {
            case TraceEventKind.Heartbeat:
                _predictor.ObserveHeartbeat(e.Endpoint, e.Time);
                break;
            case TraceEventKind.Request:
                _predictor.ObserveRequest(e.Endpoint, e.Time, e.Value, e.Failed);
                break;
            case TraceEventKind.Load:
                _predictor.ObserveLoad(e.Endpoint, e.Time, e.Value);
                break;
            case TraceEventKind.Host:
                _predictor.ObserveHost(e.Endpoint, e.Time, e.Value, e.Value2);
                break;
            case TraceEventKind.Notice:
                _predictor.ObserveInterruptionNotice(e.Endpoint, e.Time, e.Value);
                break;
            default:
                break;
        }
    }

    /// <summary>Each evacuation with the score that caused it (for the report's reason breakdown).</summary>
    public List<(double Time, int Endpoint, EndpointScore Score)> Evacuations { get; } = [];

    /// <summary>Full scoring once a second, the liveness pass on every other 100 ms tick, as
    /// the daemon is meant to run them.</summary>
    public void Tick(double nowSeconds)
    {
        var whole = Math.Abs(nowSeconds - Math.Round(nowSeconds)) < 1e-6;
        var summary = whole ? _predictor.Evaluate(nowSeconds) : _predictor.EvaluateLiveness(nowSeconds);
        if (summary.NewlyEvacuated > 0)
        {
            for (var i = 0; i < _predictor.Count; i++)
            {
                if (_predictor.GetDecision(i) == EndpointDecision.Evacuate && !_wasEvacuated[i])
                {
                    Evacuations.Add((nowSeconds, i, _predictor.GetScore(i)));
                }
            }
        }

        for (var i = 0; i < _predictor.Count; i++)
        {
            _wasEvacuated[i] = _predictor.GetDecision(i) == EndpointDecision.Evacuate;
        }
    }

    public bool IsEvacuated(int endpoint) => _predictor.GetDecision(endpoint) == EndpointDecision.Evacuate;
}

/// <summary>
/// Envoy outlier detection with its defaults: consecutive_5xx 5 (ejects at once), success-rate
/// ejection every interval 10 s (minimum_hosts 5, request_volume 100, stdev_factor 1.9),
/// base_ejection_time 30 s × times ejected, max_ejection_percent 10% (at least one host).
/// Timeouts and resets count as 5xx.
/// </summary>
public sealed class EnvoyOutlierDetector : IFailureDetector
{
    private const int Consecutive5xx = 5;
    private const double IntervalSeconds = 10;
    private const int MinimumHosts = 5;
    private const int RequestVolume = 100;
    private const double StdevFactor = 1.9;
    private const double BaseEjectionSeconds = 30;
    private const double MaxEjectionPercent = 10;

    private int[] _consecutive = [];
    private int[] _requests = [];
    private int[] _successes = [];
    private bool[] _ejected = [];
    private double[] _ejectedAt = [];
    private int[] _timesEjected = [];
    private double _nextInterval;

    public string Name => "Envoy outlier (defaults)";

    public void Reset(Trace trace, TraceSettings settings)
    {
        var n = trace.Endpoints;
        _consecutive = new int[n];
        _requests = new int[n];
        _successes = new int[n];
        _ejected = new bool[n];
        _ejectedAt = new double[n];
        _timesEjected = new int[n];
        _nextInterval = IntervalSeconds;
    }

    public void OnEvent(in TraceEvent e)
    {
        if (e.Kind != TraceEventKind.Request)
        {
            return;
        }

        var i = e.Endpoint;
        _requests[i]++;
        if (e.Failed)
        {
            _consecutive[i]++;
            if (_consecutive[i] >= Consecutive5xx)
            {
                _consecutive[i] = 0;
                TryEject(i, e.Time);
            }
        }
        else
        {
            _successes[i]++;
            _consecutive[i] = 0;
        }
    }

    public void Tick(double nowSeconds)
    {
        if (nowSeconds < _nextInterval)
        {
            return;
        }

        _nextInterval += IntervalSeconds;
        var n = _ejected.Length;
        for (var i = 0; i < n; i++)
        {
            if (_ejected[i] && nowSeconds - _ejectedAt[i] >= BaseEjectionSeconds * _timesEjected[i])
            {
                _ejected[i] = false;
            }
        }

        // Success-rate ejection over the hosts with enough volume.
        var hosts = 0;
        double sum = 0, sumSquares = 0;
        for (var i = 0; i < n; i++)
        {
            if (_requests[i] >= RequestVolume)
            {
                var rate = (double)_successes[i] / _requests[i];
                hosts++;
                sum += rate;
                sumSquares += rate * rate;
            }
        }

        if (hosts >= MinimumHosts)
        {
            var mean = sum / hosts;
            var stdev = Math.Sqrt(Math.Max(0, (sumSquares / hosts) - (mean * mean)));
            for (var i = 0; i < n; i++)
            {
                if (_requests[i] >= RequestVolume && (double)_successes[i] / _requests[i] < mean - (StdevFactor * stdev))
                {
                    TryEject(i, nowSeconds);
                }
            }
        }

        Array.Clear(_requests);
        Array.Clear(_successes);
    }

    public bool IsEvacuated(int endpoint) => _ejected[endpoint];

    private void TryEject(int i, double now)
    {
        if (_ejected[i])
        {
            return;
        }

        var ejected = 0;
        foreach (var b in _ejected)
        {
            ejected += b ? 1 : 0;
        }

        if (ejected > 0 && (ejected + 1) * 100.0 / _ejected.Length > MaxEjectionPercent)
        {
            return;
        }

        _ejected[i] = true;
        _ejectedAt[i] = now;
        _timesEjected[i]++;
    }
}

/// <summary>Akka's phi accrual failure detector with its cluster defaults.</summary>
public sealed class AkkaPhiDetector : IFailureDetector
{
    private PhiAccrualDetector[] _detectors = [];
    private bool[] _down = [];

    public string Name => "Akka phi (defaults)";

    public void Reset(Trace trace, TraceSettings settings)
    {
        _detectors = new PhiAccrualDetector[trace.Endpoints];
        _down = new bool[trace.Endpoints];
        for (var i = 0; i < _detectors.Length; i++)
        {
            _detectors[i] = new PhiAccrualDetector(PhiAccrualOptions.AkkaDefaults);
        }
    }

    public void OnEvent(in TraceEvent e)
    {
        if (e.Kind == TraceEventKind.Heartbeat)
        {
            _detectors[e.Endpoint].Heartbeat(e.Time);
        }
    }

    public void Tick(double nowSeconds)
    {
        for (var i = 0; i < _detectors.Length; i++)
        {
            _down[i] = _detectors[i].HasHeartbeat && !_detectors[i].IsAvailable(nowSeconds);
        }
    }

    public bool IsEvacuated(int endpoint) => _down[endpoint];
}

/// <summary>HAProxy active checks with defaults: inter 2 s, fall 3, rise 2.</summary>
public sealed class HaproxyCheckDetector : IFailureDetector
{
    private const int Fall = 3;
    private const int Rise = 2;
    private int[] _failures = [];
    private int[] _successes = [];
    private bool[] _down = [];

    public string Name => "HAProxy check (inter 2s fall 3)";

    public void Reset(Trace trace, TraceSettings settings)
    {
        _failures = new int[trace.Endpoints];
        _successes = new int[trace.Endpoints];
        _down = new bool[trace.Endpoints];
    }

    public void OnEvent(in TraceEvent e)
    {
        if (e.Kind != TraceEventKind.Probe)
        {
            return;
        }

        var i = e.Endpoint;
        if (e.Failed)
        {
            _successes[i] = 0;
            if (++_failures[i] >= Fall)
            {
                _down[i] = true;
            }
        }
        else
        {
            _failures[i] = 0;
            if (++_successes[i] >= Rise)
            {
                _down[i] = false;
            }
        }
    }

    public void Tick(double nowSeconds)
    {
    }

    public bool IsEvacuated(int endpoint) => _down[endpoint];
}

/// <summary>A plain reactive threshold: in a 1 s window, error rate above the limit (5+
/// requests) or mean latency above the SLO, or 2 s without a heartbeat; restored after 10 s
/// clean.</summary>
public sealed class ReactiveThresholdDetector : IFailureDetector
{
    private int[] _requests = [];
    private int[] _errors = [];
    private double[] _latencySum = [];
    private int[] _latencyCount = [];
    private double[] _lastHeartbeat = [];
    private double[] _cleanSince = [];
    private bool[] _down = [];
    private double _windowStart;
    private TraceSettings _settings = new();

    public string Name => "Reactive threshold";

    public void Reset(Trace trace, TraceSettings settings)
    {
        var n = trace.Endpoints;
        _settings = settings;
        _requests = new int[n];
        _errors = new int[n];
        _latencySum = new double[n];
        _latencyCount = new int[n];
        _lastHeartbeat = new double[n];
        _lastHeartbeat.AsSpan().Fill(double.NaN);
        _cleanSince = new double[n];
        _down = new bool[n];
        _windowStart = 0;
    }

    public void OnEvent(in TraceEvent e)
    {
        var i = e.Endpoint;
        if (e.Kind == TraceEventKind.Heartbeat)
        {
            _lastHeartbeat[i] = e.Time;
        }
        else if (e.Kind == TraceEventKind.Request)
        {
            _requests[i]++;
            if (e.Failed)
            {
                _errors[i]++;
            }
            else
            {
                _latencySum[i] += e.Value;
                _latencyCount[i]++;
            }
        }
    }

    public void Tick(double nowSeconds)
    {
        var n = _down.Length;
        var closeWindow = nowSeconds - _windowStart >= 1.0;
        for (var i = 0; i < n; i++)
        {
            var bad = !double.IsNaN(_lastHeartbeat[i]) && nowSeconds - _lastHeartbeat[i] > 2.0;
            if (closeWindow)
            {
                bad |= _requests[i] >= 5 && (double)_errors[i] / _requests[i] > _settings.ErrorRateLimit;
                bad |= _latencyCount[i] > 0 && _latencySum[i] / _latencyCount[i] > _settings.LatencySloSeconds;
            }

            if (bad)
            {
                _down[i] = true;
                _cleanSince[i] = double.NaN;
            }
            else if (_down[i] && closeWindow)
            {
                if (double.IsNaN(_cleanSince[i]))
                {
                    _cleanSince[i] = nowSeconds;
                }
                else if (nowSeconds - _cleanSince[i] >= 10)
                {
                    _down[i] = false;
                }
            }
        }

        if (closeWindow)
        {
            _windowStart = nowSeconds;
            Array.Clear(_requests);
            Array.Clear(_errors);
            Array.Clear(_latencySum);
            Array.Clear(_latencyCount);
        }
    }

    public bool IsEvacuated(int endpoint) => _down[endpoint];
}
