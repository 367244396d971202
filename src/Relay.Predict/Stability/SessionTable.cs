using Relay.Predict.Forecasting;

namespace Relay.Predict.Stability;

/// <summary>A session's stability: its endpoint's probability of interruption combined with
/// the session's own latency and throughput trends (independent: P = 1 - Π(1 - p_i)).</summary>
public struct SessionScore
{
    public double Score { get; set; }

    public double Probability { get; set; }

    public double PEndpoint { get; set; }

    public double PLatency { get; set; }

    public double PThroughput { get; set; }

    /// <summary>Probability × priority: what the planner ranks by.</summary>
    public double ExpectedLoss { get; set; }
}

/// <summary>
/// Fixed-capacity table of sessions with their own trend models; allocation-free after
/// construction. Session ids are slot indices, reused after <see cref="Remove"/>.
/// </summary>
public sealed class SessionTable
{
    /// <summary>Throughput below this share of the session's own baseline counts as collapsing.</summary>
    public const double ThroughputCollapseShare = 0.2;

    private readonly Slot[] _slots;
    private readonly int[] _free;
    private readonly PredictorOptions _options;
    private int _freeCount;

    public SessionTable(int capacity, PredictorOptions? options = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(capacity);
        _options = options ?? new PredictorOptions();
        _slots = new Slot[capacity];
        _free = new int[capacity];
        for (var i = 0; i < capacity; i++)
        {
            _free[i] = capacity - 1 - i;
        }

        _freeCount = capacity;
    }

    public int Capacity => _slots.Length;

    public int Count => _slots.Length - _freeCount;

    /// <summary>Adds a session on <paramref name="endpoint"/>; returns its id, or -1 when full.</summary>
    public int Add(int endpoint, double priority = 1.0, double latencySloSeconds = 0.25)
    {
        if (_freeCount == 0 || endpoint < 0 || !(priority >= 0) || !double.IsFinite(priority) || !(latencySloSeconds > 0))
        {
            return -1;
        }

        var id = _free[--_freeCount];
        ref var s = ref _slots[id];
        s = default;
        s.Active = true;
        s.Endpoint = endpoint;
        s.Priority = priority;
        s.LatencySlo = latencySloSeconds;
        s.BucketStart = double.NaN;
        s.Latency = new HoltLinear(_options.TrendAlpha, _options.TrendBeta, EndpointState.LatencyMinStdDev);
        s.Throughput = new HoltLinear(_options.TrendAlpha, _options.TrendBeta, 1.0);
        s.Baseline = new Ewma(300);
        s.Score.Score = 1;
        return id;
    }

    public bool Remove(int id)
    {
        if (!IsActive(id))
        {
            return false;
        }

        _slots[id].Active = false;
        _free[_freeCount++] = id;
        return true;
    }

    /// <summary>Records that the session now runs on another endpoint (after a splice).</summary>
    public bool Move(int id, int endpoint)
    {
        if (!IsActive(id) || endpoint < 0)
        {
            return false;
        }

        _slots[id].Endpoint = endpoint;
        _slots[id].Latency.Reset();
        return true;
    }

    public bool IsActive(int id) => (uint)id < (uint)_slots.Length && _slots[id].Active;

    public int GetEndpoint(int id) => _slots[id].Endpoint;

    public double GetPriority(int id) => _slots[id].Priority;

    public ref readonly SessionScore GetScore(int id) => ref _slots[id].Score;

    public SampleResult ObserveLatency(int id, double nowSeconds, double latencySeconds)
    {
        if (!IsActive(id))
        {
            return SampleResult.RejectedUnknownEndpoint;
        }

        if (!double.IsFinite(nowSeconds) || !double.IsFinite(latencySeconds))
        {
            return SampleResult.RejectedNotFinite;
        }

        if (latencySeconds < 0)
        {
            return SampleResult.RejectedNegative;
        }

        ref var s = ref _slots[id];
        if (nowSeconds < s.BucketStart)
        {
            return SampleResult.RejectedOutOfOrder;
        }

        Roll(ref s, nowSeconds);
        s.LatencySum += latencySeconds;
        s.LatencyCount++;
        return SampleResult.Accepted;
    }

    /// <summary>Bytes moved since the last report (any unit, as long as it is consistent). Report
    /// only while the session has demand (a request outstanding or data queued): an idle
    /// session that reports nothing is not a collapsing one; one that reports 0 is.</summary>
    public SampleResult ObserveBytes(int id, double nowSeconds, double bytes)
    {
        if (!IsActive(id))
        {
            return SampleResult.RejectedUnknownEndpoint;
        }

        if (!double.IsFinite(nowSeconds) || !double.IsFinite(bytes))
        {
            return SampleResult.RejectedNotFinite;
        }

        if (bytes < 0)
        {
            return SampleResult.RejectedNegative;
        }

        ref var s = ref _slots[id];
        if (nowSeconds < s.BucketStart)
        {
            return SampleResult.RejectedOutOfOrder;
        }

        Roll(ref s, nowSeconds);
        s.Bytes += bytes;
        s.SawBytes = true;
        return SampleResult.Accepted;
    }

    /// <summary>Scores every active session against its endpoint's latest score in
    /// <paramref name="cluster"/> (call <see cref="ClusterPredictor.Evaluate"/> first).</summary>
    public void Evaluate(double nowSeconds, ClusterPredictor cluster)
    {
        ArgumentNullException.ThrowIfNull(cluster);
        if (!double.IsFinite(nowSeconds))
        {
            return;
        }

        var horizon = _options.HorizonSeconds / _options.BucketSeconds;
        var endpoints = cluster.Count;
        for (var id = 0; id < _slots.Length; id++)
        {
            ref var s = ref _slots[id];
            if (!s.Active)
            {
                continue;
            }

            Roll(ref s, nowSeconds);
            ref var score = ref s.Score;
            score.PEndpoint = s.Endpoint < endpoints ? cluster.GetScore(s.Endpoint).Probability : 0.0;
            score.PLatency = s.Latency.Count >= 3 ? s.Latency.ProbabilityAbove(s.LatencySlo, horizon) : 0.0;
            if (s.Throughput.Count >= 5 && s.Baseline.HasValue && s.Baseline.Value > 0)
            {
                score.PThroughput = 1.0 - s.Throughput.ProbabilityAbove(ThroughputCollapseShare * s.Baseline.Value, horizon);
            }
            else
            {
                score.PThroughput = 0.0;
            }

            score.Probability = 1.0 - ((1.0 - score.PEndpoint) * (1.0 - score.PLatency) * (1.0 - score.PThroughput));
            score.Score = 1.0 - score.Probability;
            score.ExpectedLoss = score.Probability * s.Priority;
        }
    }

    private void Roll(ref Slot s, double now)
    {
        var bucket = _options.BucketSeconds;
        if (double.IsNaN(s.BucketStart))
        {
            s.BucketStart = now;
            return;
        }

        if (now < s.BucketStart + bucket)
        {
            return;
        }

        if (s.LatencyCount > 0)
        {
            s.Latency.Update(s.LatencySum / s.LatencyCount);
        }

        if (s.SawBytes)
        {
            // Bytes are reported only while there is demand, so the rate is per bucket that had
            // reports, not spread over idle time in between.
            var rate = s.Bytes / bucket;
            s.Throughput.Update(rate);
            s.Baseline.Update(rate, now);
        }

        s.LatencySum = 0;
        s.LatencyCount = 0;
        s.Bytes = 0;
        s.SawBytes = false;
        s.BucketStart += bucket * Math.Floor((now - s.BucketStart) / bucket);
    }

    private struct Slot
    {
        public bool Active;
        public bool SawBytes;
        public int Endpoint;
        public double Priority;
        public double LatencySlo;
        public double BucketStart;
        public double LatencySum;
        public int LatencyCount;
        public double Bytes;
        public HoltLinear Latency;
        public HoltLinear Throughput;
        public Ewma Baseline;
        public SessionScore Score;
    }
}
