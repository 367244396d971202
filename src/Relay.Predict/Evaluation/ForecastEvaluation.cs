using Relay.Predict.Forecasting;
using Relay.Predict.Stability;

namespace Relay.Predict.Evaluation;

/// <summary>Forecast accuracy of Holt-Winters against seasonal naive on one series. Mase is
/// the MAE of Holt-Winters over the MAE of seasonal naive on the same points at the same horizon
/// (below 1: better); MaeRatioVsNaive the same against the last value (a harder baseline at short
/// horizons on non-seasonal series); Coverage80 the share of actuals inside the calibrated 80%
/// interval.</summary>
public sealed record ForecastResult(
    string Series,
    int Points,
    int Scored,
    int SeasonLength,
    int HorizonSteps,
    double Alpha,
    double Beta,
    double Gamma,
    double RobustClip,
    bool LogScale,
    double Mase,
    double SmapeModel,
    double SmapeSeasonalNaive,
    double MaeRatioVsNaive,
    double Coverage80);

/// <summary>A labelled anomaly window in sample indices [Start, End].</summary>
public readonly record struct LabelledWindow(int Start, int End);

/// <summary>How an online detector did against a series' labelled windows.</summary>
public sealed record WindowDetectionResult(string Series, string Detector, int Windows, int Caught, double MedianDetectionHoursAfterWindowStart, int FalseAlarms, double Days)
{
    public double FalseAlarmsPerDay => Days > 0 ? FalseAlarms / Days : double.NaN;
}

/// <summary>
/// Forecast evaluation on in-memory series: the smoothing parameters are chosen on the first
/// half, the figures are measured on the second half only. The choice is a grid search that
/// minimises a robust scale (the τ-scale) of the horizon-h errors on the first half, as Gelper,
/// Fried and Croux choose robust Holt-Winters' parameters: an anomaly in the first half then
/// does not decide the parameters for the second.
/// </summary>
public static class ForecastEvaluation
{
    private static readonly double[] _alphas = [0.05, 0.1, 0.2, 0.3, 0.5, 0.7];
    private static readonly double[] _betas = [0.0, 0.01, 0.05];
    private static readonly double[] _gammas = [0.05, 0.1, 0.2, 0.4];
    private static readonly double[] _clips = [double.PositiveInfinity, 2.0];

    public static ForecastResult Evaluate(string name, IReadOnlyList<double> values, int seasonLength, int horizonSteps)
    {
        ArgumentNullException.ThrowIfNull(values);
        var half = values.Count / 2;
        double bestLoss = double.PositiveInfinity, bestA = 0.2, bestB = 0.01, bestG = 0.1, bestClip = double.PositiveInfinity;
        var bestLog = false;
        var nonNegative = true;
        var errors = new List<double>(half);
        for (var i = 0; i < half; i++)
        {
            nonNegative &= values[i] >= 0;
        }

        foreach (var log in nonNegative ? [false, true] : new[] { false })
        {
        foreach (var clip in _clips)
        {
            foreach (var a in _alphas)
            {
                foreach (var b in _betas)
                {
                    foreach (var g in _gammas)
                    {
                        Run(values, seasonLength, horizonSteps, a, b, g, clip, log, 2 * seasonLength, half, errors, out _, out _, out _, out _, out _, out _);
                        var loss = TauScale(errors);
                        if (loss < bestLoss)
                        {
                            (bestLoss, bestA, bestB, bestG, bestClip, bestLog) = (loss, a, b, g, clip, log);
                        }
                    }
                }
            }
        }
        }

        var modelMae = Run(values, seasonLength, horizonSteps, bestA, bestB, bestG, bestClip, bestLog, half, values.Count, null, out var snaiveMae, out var naiveMae, out var smapeModel, out var smapeSnaive, out var coverage, out var scored);
        return new ForecastResult(name, values.Count, scored, seasonLength, horizonSteps, bestA, bestB, bestG, bestClip, bestLog,
            modelMae / snaiveMae, smapeModel, smapeSnaive, modelMae / naiveMae, coverage);
    }

    private static double Run(IReadOnlyList<double> values, int m, int h, double a, double b, double g, double clip, bool log, int scoreFrom, int scoreTo, List<double>? errors,
        out double snaiveMae, out double naiveMae, out double smapeModel, out double smapeSnaive, out double coverage, out int scored)
    {
        var hw = new HoltWinters(m, a, b, g, trackedHorizon: h, robustClip: clip);
        var snaive = new SeasonalNaive(m);
        var forecast = new double[h];
        var lower = new double[h];
        var upper = new double[h];
        var seasonal = new double[h];
        var last = new double[h];
        double sumModel = 0, sumSnaive = 0, sumNaive = 0, sModel = 0, sSnaive = 0;
        int covered = 0, count = 0;
        errors?.Clear();
        for (var t = 0; t < scoreTo; t++)
        {
            var y = values[t];
            var slot = t % h;
            if (t >= scoreFrom && t >= h)
            {
                sumModel += Math.Abs(y - forecast[slot]);
                sumSnaive += Math.Abs(y - seasonal[slot]);
                sumNaive += Math.Abs(y - last[slot]);
                sModel += Smape(y, forecast[slot]);
                sSnaive += Smape(y, seasonal[slot]);
                covered += y >= lower[slot] && y <= upper[slot] ? 1 : 0;
                count++;
                errors?.Add(y - forecast[slot]);
            }

            hw.Update(log ? Math.Log(1 + Math.Max(0, y)) : y);
            snaive.Update(y);
            forecast[slot] = hw.Forecast(h);
            (lower[slot], upper[slot]) = hw.PredictionInterval(h);
            if (log)
            {
                // Back-transform: exp of the log-scale forecast is a median forecast, the right
                // target for MAE; the interval maps through monotonically, so coverage holds.
                forecast[slot] = Math.Exp(forecast[slot]) - 1;
                lower[slot] = Math.Exp(lower[slot]) - 1;
                upper[slot] = Math.Exp(upper[slot]) - 1;
            }
            seasonal[slot] = snaive.Forecast(h);
            last[slot] = y;
        }

        scored = count;
        snaiveMae = sumSnaive / count;
        naiveMae = sumNaive / count;
        smapeModel = 100 * sModel / count;
        smapeSnaive = 100 * sSnaive / count;
        coverage = (double)covered / count;
        return sumModel / count;
    }

    /// <summary>τ-scale of the errors (Yohai and Zamar 1988, as Gelper et al. use it):
    /// s₀ = median |e| / 0.6745, τ = s₀·√(mean ρ(e/s₀)) with Tukey's biweight ρ at c = 2 (ρ(u) = 1
    /// − (1 − (u/c)²)³ inside, 1 outside). Errors beyond 2 s₀ count as much as one at 2 s₀, so a
    /// burst of anomalies weighs no more than its share of the points.</summary>
    internal static double TauScale(List<double> errors)
    {
        if (errors.Count == 0)
        {
            return double.PositiveInfinity;
        }

        var abs = new double[errors.Count];
        for (var i = 0; i < abs.Length; i++)
        {
            abs[i] = Math.Abs(errors[i]);
        }

        Array.Sort(abs);
        var median = (abs.Length & 1) == 1 ? abs[abs.Length / 2] : 0.5 * (abs[(abs.Length / 2) - 1] + abs[abs.Length / 2]);
        var s0 = median / 0.6745;
        if (!(s0 > 0))
        {
            // Over half the errors are zero: fall back to the mean absolute error.
            return abs.Average();
        }

        const double C = 2.0;
        double sum = 0;
        foreach (var e in abs)
        {
            var u = e / (C * s0);
            var v = 1 - (u * u);
            sum += u >= 1 ? 1.0 : 1 - (v * v * v);
        }

        return s0 * Math.Sqrt(sum / abs.Length);
    }

    private static double Smape(double y, double f)
    {
        var d = Math.Abs(y) + Math.Abs(f);
        return d == 0 ? 0 : 2 * Math.Abs(y - f) / d;
    }

    /// <summary>
    /// Online anomaly detection against labelled windows. Relay: Holt-Winters one-step residual
    /// standardised by its running spread, then a two-sided Page-Hinkley on it, alarm also on a
    /// single |z| &gt; 6. Baseline: a static threshold at mean ± 3σ of the first 15% (NAB's
    /// probationary period). Both keep quiet for a refractory hour after an alarm. Parameters
    /// are fixed, not tuned on the labels.
    /// </summary>
    public static IReadOnlyList<WindowDetectionResult> DetectWindows(string name, IReadOnlyList<double> values, IReadOnlyList<LabelledWindow> windows, int seasonLength, double samplesPerHour)
    {
        ArgumentNullException.ThrowIfNull(values);
        ArgumentNullException.ThrowIfNull(windows);
        var n = values.Count;
        var probation = (int)(0.15 * n);
        var refractory = (int)Math.Max(1, samplesPerHour);

        var relay = new bool[n];
        var hw = new HoltWinters(seasonLength, 0.2, 0.0, 0.1);
        var up = new PageHinkley(0.5, 20, warmup: 0);
        var down = new PageHinkley(0.5, 20, warmup: 0);
        var spread = new Ewma(50);
        var quietUntil = 0;
        for (var t = 0; t < n; t++)
        {
            var y = values[t];
            if (hw.IsReady && t >= probation)
            {
                var residual = y - hw.Forecast(1);
                var scale = Math.Max(spread.HasValue ? spread.Value : Math.Abs(residual), 1e-9);
                var z = residual / (1.25 * scale);
                var alarm = up.Update(Math.Clamp(z, -10, 10)) | down.Update(Math.Clamp(-z, -10, 10)) | Math.Abs(z) > 6;
                if (alarm && t >= quietUntil)
                {
                    relay[t] = true;
                    quietUntil = t + refractory;
                    up.Reset();
                    down.Reset();
                }

                spread.Update(Math.Min(Math.Abs(residual), 6 * scale), t);
            }
            else if (hw.IsReady)
            {
                spread.Update(Math.Abs(y - hw.Forecast(1)), t);
            }

            hw.Update(y);
        }

        double mean = 0, m2 = 0;
        for (var t = 0; t < probation; t++)
        {
            var d = values[t] - mean;
            mean += d / (t + 1);
            m2 += d * (values[t] - mean);
        }

        var sd = probation > 1 ? Math.Sqrt(m2 / (probation - 1)) : 0;
        var threshold = new bool[n];
        quietUntil = 0;
        for (var t = probation; t < n; t++)
        {
            if (Math.Abs(values[t] - mean) > 3 * sd && t >= quietUntil)
            {
                threshold[t] = true;
                quietUntil = t + refractory;
            }
        }

        var days = (n - probation) / (samplesPerHour * 24);
        return [Score(name, "Relay (HW residual + Page-Hinkley)", relay, windows, probation, samplesPerHour, days),
                Score(name, "Static 3σ threshold", threshold, windows, probation, samplesPerHour, days)];
    }

    private static WindowDetectionResult Score(string name, string detector, bool[] alarms, IReadOnlyList<LabelledWindow> windows, int from, double samplesPerHour, double days)
    {
        var caught = 0;
        var delays = new List<double>();
        var falseAlarms = 0;
        var counted = 0;
        foreach (var w in windows)
        {
            if (w.End < from)
            {
                continue;
            }

            counted++;
            for (var t = Math.Max(w.Start, from); t <= w.End && t < alarms.Length; t++)
            {
                if (alarms[t])
                {
                    caught++;
                    delays.Add((t - w.Start) / samplesPerHour);
                    break;
                }
            }
        }

        for (var t = from; t < alarms.Length; t++)
        {
            if (!alarms[t])
            {
                continue;
            }

            var inside = false;
            foreach (var w in windows)
            {
                inside |= t >= w.Start && t <= w.End;
            }

            falseAlarms += inside ? 0 : 1;
        }

        return new WindowDetectionResult(name, detector, counted, caught, SyntheticReport.Quantile([.. delays], 0.5), falseAlarms, days);
    }
}
