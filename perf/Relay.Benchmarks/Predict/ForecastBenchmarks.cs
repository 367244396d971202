using BenchmarkDotNet.Attributes;
using Relay.Predict.Forecasting;
using Relay.Predict.Stability;

namespace Relay.Benchmarks.Predict;

/// <summary>Per-sample update cost of each model (1,000 updates per invocation).</summary>
[MemoryDiagnoser]
[Config(typeof(PredictBenchmarkConfig))]
public class ForecastBenchmarks
{
    private const int Operations = 1000;
    private readonly double[] _values = new double[Operations];
    private HoltLinear _holt = new(0.3, 0.05, 0.001);
    private HoltWinters _holtWinters = new(288, 0.1, 0.01, 0.1, trackedHorizon: 12);
    private HoltWinters _robustHoltWinters = new(288, 0.1, 0.01, 0.1, trackedHorizon: 12, robustClip: 2);
    private Ewma _ewma = new(10);
    private PeakEwma _peak = new(10);
    private PageHinkley _pageHinkley = new(0.01, 5);
    private PhiAccrualDetector _phi = new(new PhiAccrualOptions());
    private double _now;

    [GlobalSetup]
    public void Setup()
    {
        var rng = new Random(1);
        for (var i = 0; i < Operations; i++)
        {
            _values[i] = 100 + (10 * Math.Sin(i / 10.0)) + rng.NextDouble();
        }

        for (var i = 0; i < 1000; i++)
        {
            _holtWinters.Update(_values[i % Operations]);
            _robustHoltWinters.Update(_values[i % Operations]);
        }

        if (!_holtWinters.IsReady || !double.IsFinite(_holtWinters.Forecast(12)) || !double.IsFinite(_robustHoltWinters.Forecast(12)))
        {
            throw new InvalidOperationException("Holt-Winters not ready");
        }
    }

    [Benchmark(OperationsPerInvoke = Operations)]
    public double HoltLinearUpdate()
    {
        foreach (var v in _values)
        {
            _holt.Update(v);
        }

        return _holt.Level;
    }

    [Benchmark(OperationsPerInvoke = Operations)]
    public double HoltWintersUpdate()
    {
        foreach (var v in _values)
        {
            _holtWinters.Update(v);
        }

        return _holtWinters.Level;
    }

    [Benchmark(OperationsPerInvoke = Operations)]
    public double RobustHoltWintersUpdate()
    {
        foreach (var v in _values)
        {
            _robustHoltWinters.Update(v);
        }

        return _robustHoltWinters.Level;
    }

    [Benchmark(OperationsPerInvoke = Operations)]
    public double HoltWintersForecastWithInterval()
    {
        var sum = 0.0;
        for (var i = 0; i < Operations; i++)
        {
            sum += _holtWinters.PredictionInterval(12).Upper;
        }

        return sum;
    }

    [Benchmark(OperationsPerInvoke = Operations)]
    public double EwmaAndPeakEwmaUpdate()
    {
        foreach (var v in _values)
        {
            _now += 0.1;
            _ewma.Update(v, _now);
            _peak.Update(v, _now);
        }

        return _ewma.Value + _peak.Value;
    }

    [Benchmark(OperationsPerInvoke = Operations)]
    public bool PageHinkleyUpdate()
    {
        var alarm = false;
        foreach (var v in _values)
        {
            alarm |= _pageHinkley.Update(v);
        }

        return alarm;
    }

    [Benchmark(OperationsPerInvoke = Operations)]
    public double PhiHeartbeatAndPhi()
    {
        var phi = 0.0;
        for (var i = 0; i < Operations; i++)
        {
            _now += 0.2;
            _phi.Heartbeat(_now);
            phi += _phi.Phi(_now + 0.1);
        }

        return phi;
    }
}
