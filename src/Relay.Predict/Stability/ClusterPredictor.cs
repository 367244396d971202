using System.Diagnostics;
using Relay.Predict.Forecasting;

namespace Relay.Predict.Stability;

/// <summary>Summary of one <see cref="ClusterPredictor.Evaluate"/> pass.</summary>
public readonly record struct EvaluationSummary(ScoreStatus Status, int Endpoints, int Evacuating, int NewlyEvacuated, int HeldByCap, int HeldBySelfHealth);

/// <summary>
/// Scores the endpoints of one cluster (interchangeable endpoints of one route) and applies the
/// guards: hysteresis and dwell, a cap on the share evacuated at once for soft reasons,
/// peer-relative outliers, flap back-off and the self-health gate.
/// </summary>
/// <remarks>
/// Pure computation: every method takes the time explicitly (seconds on any monotonic scale,
/// e.g. <c>TimeProvider.GetElapsedTime(start).TotalSeconds</c>). Observe methods and
/// <see cref="Evaluate"/> never throw on bad input; they return a <see cref="SampleResult"/> or a
/// <see cref="ScoreStatus"/>. Not thread-safe: one writer, like a cluster's scoring loop.
/// Allocation-free after <see cref="AddEndpoint"/>.
/// </remarks>
public sealed class ClusterPredictor
{
    private readonly List<EndpointState> _endpoints = [];
    private double[] _scratch = [];
    private double _lastEvaluation = double.NaN;
    private double _selfCpu;
    private double _selfLagSeconds;

    public ClusterPredictor(PredictorOptions? options = null)
    {
        Options = options ?? new PredictorOptions();
        Options.Validate(nameof(options));
    }

    public PredictorOptions Options { get; }

    public int Count => _endpoints.Count;

    /// <summary>Samples rejected so far (not finite, negative, out of order, unknown endpoint).</summary>
    public long RejectedSamples { get; private set; }

    /// <summary>Registers an endpoint and returns its index. Allocates (once per endpoint).</summary>
    public int AddEndpoint(int zone = 0, EndpointLimits? limits = null)
    {
        limits ??= new EndpointLimits();
        limits.Validate(nameof(limits));
        var state = new EndpointState(zone, limits, Options) { RestoreDwell = Options.RestoreDwellSeconds };
        state.Score.Score = Options.NoHistoryScore;
        state.Score.Status = ScoreStatus.NoHistory;
        _endpoints.Add(state);
        if (_scratch.Length < _endpoints.Count)
        {
            _scratch = new double[Math.Max(8, _endpoints.Count * 2)];
        }

        return _endpoints.Count - 1;
    }

    public ref readonly EndpointScore GetScore(int endpoint) => ref _endpoints[endpoint].Score;

    public EndpointDecision GetDecision(int endpoint) => _endpoints[endpoint].Decision;

    public int GetZone(int endpoint) => _endpoints[endpoint].Zone;

    public EndpointLimits GetLimits(int endpoint) => _endpoints[endpoint].Limits;

    public int GetFlapCount(int endpoint) => _endpoints[endpoint].FlapCount;

    /// <summary>Latest smoothed latency (Holt level) in seconds, NaN without samples.</summary>
    public double GetLatencyLevel(int endpoint) => _endpoints[endpoint].Latency.Level;

    /// <summary>Latest reported load, NaN without samples.</summary>
    public double GetLoad(int endpoint) => _endpoints[endpoint].LastLoad;

    public SampleResult ObserveHeartbeat(int endpoint, double nowSeconds)
    {
        if (!TryGet(endpoint, nowSeconds, out var state, out var result))
        {
            return Reject(result);
        }

        var last = state.Phi.LastHeartbeatSeconds;
        if (!state.Phi.Heartbeat(nowSeconds))
        {
            return Reject(SampleResult.RejectedOutOfOrder);
        }

        if (!double.IsNaN(last))
        {
            var gap = nowSeconds - last;
            state.MaxGap = Math.Max(state.MaxGap, gap);
            var mean = state.Phi.MeanIntervalSeconds;
            if (gap > (2.5 * mean) + 0.1)
            {
                state.NoteLongGap(nowSeconds);
            }
        }

        state.HasHistory = true;
        state.Roll(nowSeconds, Options.BucketSeconds);
        return SampleResult.Accepted;
    }

    /// <summary>A completed request or probe: its latency and whether it failed (error, reset,
    /// timeout).</summary>
    public SampleResult ObserveRequest(int endpoint, double nowSeconds, double latencySeconds, bool failed)
    {
        if (!TryGet(endpoint, nowSeconds, out var state, out var result))
        {
            return Reject(result);
        }

        if (!double.IsFinite(latencySeconds))
        {
            return Reject(SampleResult.RejectedNotFinite);
        }

        if (latencySeconds < 0)
        {
            return Reject(SampleResult.RejectedNegative);
        }

        if (nowSeconds < state.BucketStart)
        {
            return Reject(SampleResult.RejectedOutOfOrder);
        }

        state.Roll(nowSeconds, Options.BucketSeconds);
        state.HasHistory = true;
        state.RequestCount++;
        if (failed)
        {
            state.ErrorCount++;
        }
        else
        {
            state.LatencySum += latencySeconds;
            state.LatencyCount++;
        }

        return SampleResult.Accepted;
    }

    /// <summary>Current load (sessions, requests in flight: the unit of <see cref="EndpointLimits.Capacity"/>).</summary>
    public SampleResult ObserveLoad(int endpoint, double nowSeconds, double load)
    {
        if (!TryGet(endpoint, nowSeconds, out var state, out var result))
        {
            return Reject(result);
        }

        if (!double.IsFinite(load))
        {
            return Reject(SampleResult.RejectedNotFinite);
        }

        if (load < 0)
        {
            return Reject(SampleResult.RejectedNegative);
        }

        if (nowSeconds < state.LastLoadTime)
        {
            return Reject(SampleResult.RejectedOutOfOrder);
        }

        state.Roll(nowSeconds, Options.BucketSeconds);
        state.HasHistory = true;
        state.LastLoad = load;
        state.LastLoadTime = nowSeconds;
        return SampleResult.Accepted;
    }

    /// <summary>Host metrics from the agent, as fractions in [0, 1].</summary>
    public SampleResult ObserveHost(int endpoint, double nowSeconds, double cpu, double memory)
    {
        if (!TryGet(endpoint, nowSeconds, out var state, out var result))
        {
            return Reject(result);
        }

        if (!double.IsFinite(cpu) || !double.IsFinite(memory))
        {
            return Reject(SampleResult.RejectedNotFinite);
        }

        if (cpu < 0 || memory < 0)
        {
            return Reject(SampleResult.RejectedNegative);
        }

        if (nowSeconds < state.LastHostTime)
        {
            return Reject(SampleResult.RejectedOutOfOrder);
        }

        state.HasHistory = true;
        state.LastHostTime = nowSeconds;
        state.Cpu.Update(Math.Min(cpu, 1.0), nowSeconds);
        state.Memory.Update(Math.Min(memory, 1.0), nowSeconds);
        return SampleResult.Accepted;
    }

    /// <summary>An interruption notice (spot reclaim, maintenance): the endpoint will vanish at
    /// <paramref name="interruptAtSeconds"/>. A later notice replaces an earlier one; NaN clears it.</summary>
    public SampleResult ObserveInterruptionNotice(int endpoint, double nowSeconds, double interruptAtSeconds)
    {
        if (!TryGet(endpoint, nowSeconds, out var state, out var result))
        {
            return Reject(result);
        }

        if (double.IsInfinity(interruptAtSeconds))
        {
            return Reject(SampleResult.RejectedNotFinite);
        }

        state.HasHistory = true;
        state.InterruptAt = interruptAtSeconds;
        return SampleResult.Accepted;
    }

    /// <summary>The relay's own health: suppresses soft migrations while it is overloaded.</summary>
    public void SetSelfHealth(double cpu, double schedulingLagSeconds)
    {
        _selfCpu = double.IsFinite(cpu) ? cpu : 1.0;
        _selfLagSeconds = double.IsFinite(schedulingLagSeconds) ? schedulingLagSeconds : double.MaxValue;
    }

    public bool SelfHealthy => _selfCpu <= Options.SelfCpuLimit && _selfLagSeconds <= Options.SelfLagLimitSeconds;

    /// <summary>Scores every endpoint at <paramref name="nowSeconds"/> and updates decisions.</summary>
    public EvaluationSummary Evaluate(double nowSeconds)
    {
        var n = _endpoints.Count;
        if (!double.IsFinite(nowSeconds))
        {
            return new EvaluationSummary(ScoreStatus.InvalidTime, n, CountEvacuating(), 0, 0, 0);
        }

        if (nowSeconds < _lastEvaluation)
        {
            return new EvaluationSummary(ScoreStatus.ClockWentBackwards, n, CountEvacuating(), 0, 0, 0);
        }

        if (nowSeconds - _lastEvaluation > Options.ClockJumpSeconds)
        {
            // A jump forwards: every silence measured across it is an artefact. Rebase liveness
            // and buckets, hold decisions for this pass.
            _lastEvaluation = nowSeconds;
            for (var i = 0; i < n; i++)
            {
                var s = _endpoints[i];
                s.Phi.Rebase(nowSeconds);
                s.BucketStart = double.NaN;
                s.LowSince = double.NaN;
                s.HighSince = double.NaN;
                s.Score.Status = s.HasHistory ? ScoreStatus.ClockJump : ScoreStatus.NoHistory;
            }

            return new EvaluationSummary(ScoreStatus.ClockJump, n, CountEvacuating(), 0, 0, 0);
        }

        _lastEvaluation = nowSeconds;
        var horizonSteps = Options.HorizonSeconds / Options.BucketSeconds;

        // Pass 1: per-endpoint components; collect latency levels for the peer median.
        var withLatency = 0;
        for (var i = 0; i < n; i++)
        {
            var s = _endpoints[i];
            if (s.HasHistory)
            {
                s.Roll(nowSeconds, Options.BucketSeconds);
            }

            ScoreOwn(s, nowSeconds, horizonSteps);
            if (s.Latency.Count >= 3)
            {
                _scratch[withLatency++] = s.SlowLatency.Value;
            }
        }

        // Pass 2: peer-relative outliers (need at least three peers for a meaningful median).
        var median = double.NaN;
        if (withLatency >= 3)
        {
            var span = _scratch.AsSpan(0, withLatency);
            span.Sort();
            median = (withLatency & 1) == 1 ? span[withLatency / 2] : 0.5 * (span[(withLatency / 2) - 1] + span[withLatency / 2]);
        }

        for (var i = 0; i < n; i++)
        {
            var s = _endpoints[i];
            if (!double.IsNaN(median) && s.Latency.Count >= 3 && s.HasHistory)
            {
                var level = s.SlowLatency.Value;
                var ratio = level / Math.Max(median, 1e-6);
                var excess = level - median;
                s.Score.POutlier = excess > Options.OutlierMinExcessSeconds ? ForecastMath.Logistic((ratio - Options.OutlierRatio) / 0.2) : 0.0;
            }
            else
            {
                s.Score.POutlier = 0.0;
            }

            Combine(ref s.Score);
        }

        // Pass 3: decisions. Hard reasons act at once; soft ones after the dwell, under the cap.
        var evacuating = CountEvacuating();
        var newly = 0;
        var cap = Math.Max(1, (int)Math.Floor(Options.MaxEvacuatedShare * n));
        var candidates = 0;
        for (var i = 0; i < n; i++)
        {
            var s = _endpoints[i];
            ref var score = ref s.Score;
            if (s.Decision == EndpointDecision.Evacuate)
            {
                if (score.Score >= Options.RestoreAbove)
                {
                    if (double.IsNaN(s.HighSince))
                    {
                        s.HighSince = nowSeconds;
                    }

                    if (nowSeconds - s.HighSince >= s.RestoreDwell)
                    {
                        s.Decision = EndpointDecision.Serve;
                        s.LastRestore = nowSeconds;

                        // The shift that led here is history now; learn the new normal.
                        s.LatencyChange.Reset();
                        s.LatencyChanged = false;
                        s.HighSince = double.NaN;
                        s.LowSince = double.NaN;
                        evacuating--;
                    }
                }
                else
                {
                    s.HighSince = double.NaN;
                }

                continue;
            }

            var hard = score.PLiveness >= 0.5 || score.PNotice >= 0.5;
            if (hard)
            {
                Evacuate(s, nowSeconds);
                evacuating++;
                newly++;
                continue;
            }

            if (score.Status == ScoreStatus.Ok && score.Score < Options.EvacuateBelow)
            {
                if (double.IsNaN(s.LowSince))
                {
                    s.LowSince = nowSeconds;
                }

                s.Decision = EndpointDecision.Watch;
                if (nowSeconds - s.LowSince >= Options.SoftDwellSeconds)
                {
                    candidates++;
                }
            }
            else
            {
                s.LowSince = double.NaN;
                s.Decision = EndpointDecision.Serve;
            }
        }

        var heldByCap = 0;
        var heldBySelf = 0;
        if (candidates > 0)
        {
            if (!SelfHealthy)
            {
                heldBySelf = candidates;
            }
            else
            {
                // Worst first until the cap; candidates are few, so selection beats sorting.
                while (candidates > 0 && evacuating < cap)
                {
                    EndpointState? worst = null;
                    for (var i = 0; i < n; i++)
                    {
                        var s = _endpoints[i];
                        if (s.Decision == EndpointDecision.Watch && nowSeconds - s.LowSince >= Options.SoftDwellSeconds
                            && (worst is null || s.Score.Probability > worst.Score.Probability))
                        {
                            worst = s;
                        }
                    }

                    Debug.Assert(worst is not null);
                    Evacuate(worst!, nowSeconds);
                    evacuating++;
                    newly++;
                    candidates--;
                }

                heldByCap = candidates;
            }
        }

        return new EvaluationSummary(ScoreStatus.Ok, n, evacuating, newly, heldByCap, heldBySelf);
    }

    /// <summary>
    /// The cheap pass for hard reasons only: phi and interruption notices, no trends, no peers,
    /// no dwell. Run it more often than <see cref="Evaluate"/> (e.g. 10 Hz against 1 Hz) to
    /// detect crashes in under a second without paying for full scoring each time.
    /// </summary>
    public EvaluationSummary EvaluateLiveness(double nowSeconds)
    {
        var n = _endpoints.Count;
        if (!double.IsFinite(nowSeconds) || nowSeconds < _lastEvaluation || nowSeconds - _lastEvaluation > Options.ClockJumpSeconds)
        {
            // Odd times (invalid, backwards, a jump) are the full pass's business.
            return Evaluate(nowSeconds);
        }

        _lastEvaluation = nowSeconds;
        var newly = 0;
        for (var i = 0; i < n; i++)
        {
            var s = _endpoints[i];
            if (!s.HasHistory || s.Decision == EndpointDecision.Evacuate)
            {
                continue;
            }

            ref var score = ref s.Score;
            var phi = s.Phi.Phi(nowSeconds);
            var pLive = s.Phi.HasHeartbeat ? PhiAccrualDetector.ProbabilityDown(phi, Options.Phi.Threshold) : 0.0;
            var noticeDue = !double.IsNaN(s.InterruptAt) && s.InterruptAt - nowSeconds <= score.SecondsNeeded + Options.HorizonSeconds;
            if (pLive >= 0.5 || noticeDue)
            {
                score.Phi = phi;
                score.PLiveness = pLive;
                if (noticeDue)
                {
                    score.PNotice = 1.0;
                    score.NoticeSecondsLeft = s.InterruptAt - nowSeconds;
                }

                score.Status = ScoreStatus.Ok;
                Combine(ref score);
                Evacuate(s, nowSeconds);
                newly++;
            }
        }

        return new EvaluationSummary(ScoreStatus.Ok, n, CountEvacuating(), newly, 0, 0);
    }

    private void Evacuate(EndpointState s, double now)
    {
        if (now - s.LastRestore <= Options.FlapWindowSeconds)
        {
            s.FlapCount++;
            s.RestoreDwell = Math.Min(Options.MaxRestoreDwellSeconds, Options.RestoreDwellSeconds * Math.Pow(2.0, s.FlapCount));
        }
        else
        {
            s.FlapCount = 0;
            s.RestoreDwell = Options.RestoreDwellSeconds;
        }

        s.Decision = EndpointDecision.Evacuate;
        s.Evacuations++;
        s.LowSince = double.NaN;
        s.HighSince = double.NaN;
    }

    private void ScoreOwn(EndpointState s, double now, double horizonSteps)
    {
        ref var score = ref s.Score;
        if (!s.HasHistory)
        {
            score = default;
            score.Score = Options.NoHistoryScore;
            score.Probability = 1.0 - Options.NoHistoryScore;
            score.Status = ScoreStatus.NoHistory;
            score.NoticeSecondsLeft = double.NaN;
            return;
        }

        var limits = s.Limits;
        score.Status = ScoreStatus.Ok;
        score.Phi = s.Phi.Phi(now);
        score.PLiveness = s.Phi.HasHeartbeat ? PhiAccrualDetector.ProbabilityDown(score.Phi, Options.Phi.Threshold) : 0.0;

        score.LatencyShift = s.LatencyChanged;
        score.LatencyForecastSeconds = s.Latency.Forecast(horizonSteps);
        score.PLatency = s.Latency.Count >= 3 ? s.Latency.ProbabilityAbove(limits.LatencySloSeconds, horizonSteps) : 0.0;

        score.ErrorRateForecast = s.Errors.Forecast(horizonSteps);
        score.PErrors = s.Errors.Count >= 3 ? s.Errors.ProbabilityAbove(limits.ErrorRateLimit, horizonSteps) : 0.0;

        score.LoadForecast = s.Load.Forecast(horizonSteps);
        score.PLoad = s.Load.Count >= 3 ? s.Load.ProbabilityAbove(limits.Capacity, horizonSteps) : 0.0;

        score.PauseForecastSeconds = s.Pauses.Forecast(horizonSteps);
        score.PPauses = s.Pauses.Count >= 3 && s.HasRepeatedLongGaps(now) ? s.Pauses.ProbabilityAbove(Options.PauseLimitSeconds, horizonSteps) : 0.0;

        var cpu = s.Cpu.HasValue ? ForecastMath.Logistic((s.Cpu.Value - limits.CpuLimit) / 0.02) : 0.0;
        var mem = s.Memory.HasValue ? ForecastMath.Logistic((s.Memory.Value - limits.MemoryLimit) / 0.01) : 0.0;
        score.PHost = Math.Max(cpu, mem);

        score.SecondsNeeded = s.SecondsNeeded();
        if (!double.IsNaN(s.InterruptAt))
        {
            score.NoticeSecondsLeft = s.InterruptAt - now;
            score.PNotice = score.NoticeSecondsLeft <= score.SecondsNeeded + Options.HorizonSeconds ? 1.0 : 0.0;
        }
        else
        {
            score.NoticeSecondsLeft = double.NaN;
            score.PNotice = 0.0;
        }
    }

    private static void Combine(ref EndpointScore score)
    {
        if (score.Status != ScoreStatus.Ok)
        {
            return;
        }

        var survive = (1 - score.PLiveness) * (1 - score.PLatency) * (1 - score.PErrors) * (1 - score.PLoad)
            * (1 - score.PHost) * (1 - score.PNotice) * (1 - score.POutlier) * (1 - score.PPauses);
        score.Probability = Math.Clamp(1 - survive, 0.0, 1.0);
        score.Score = 1 - score.Probability;
        var reasons = StabilityReasons.None;
        var dominant = StabilityReasons.None;
        var max = 0.0;
        Consider(score.PLiveness, StabilityReasons.Liveness, ref reasons, ref dominant, ref max);
        Consider(score.PLatency, StabilityReasons.Latency, ref reasons, ref dominant, ref max);
        Consider(score.PErrors, StabilityReasons.Errors, ref reasons, ref dominant, ref max);
        Consider(score.PLoad, StabilityReasons.Load, ref reasons, ref dominant, ref max);
        Consider(score.PHost, StabilityReasons.Host, ref reasons, ref dominant, ref max);
        Consider(score.PNotice, StabilityReasons.Notice, ref reasons, ref dominant, ref max);
        Consider(score.POutlier, StabilityReasons.Outlier, ref reasons, ref dominant, ref max);
        Consider(score.PPauses, StabilityReasons.Pauses, ref reasons, ref dominant, ref max);
        score.Reasons = reasons;
        score.Dominant = dominant;
    }

    private static void Consider(double p, StabilityReasons reason, ref StabilityReasons reasons, ref StabilityReasons dominant, ref double max)
    {
        if (p >= 0.05)
        {
            reasons |= reason;
        }

        if (p > max)
        {
            max = p;
            dominant = reason;
        }
    }

    private int CountEvacuating()
    {
        var count = 0;
        foreach (var s in _endpoints)
        {
            if (s.Decision == EndpointDecision.Evacuate)
            {
                count++;
            }
        }

        return count;
    }

    private bool TryGet(int endpoint, double nowSeconds, out EndpointState state, out SampleResult result)
    {
        if ((uint)endpoint >= (uint)_endpoints.Count)
        {
            state = null!;
            result = SampleResult.RejectedUnknownEndpoint;
            return false;
        }

        if (!double.IsFinite(nowSeconds))
        {
            state = null!;
            result = SampleResult.RejectedNotFinite;
            return false;
        }

        state = _endpoints[endpoint];
        result = SampleResult.Accepted;
        return true;
    }

    private SampleResult Reject(SampleResult result)
    {
        RejectedSamples++;
        return result;
    }
}
