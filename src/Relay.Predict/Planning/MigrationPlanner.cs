using Relay.Predict.Stability;

namespace Relay.Predict.Planning;

/// <summary>Why a session should move.</summary>
public enum MigrationReason
{
    /// <summary>Its endpoint is being evacuated (the endpoint score's dominant reason says why).</summary>
    EndpointEvacuating,

    /// <summary>The session's own score fell below the threshold (its latency or throughput).</summary>
    SessionDegrading,

    /// <summary>Nothing is wrong, but another endpoint is better by more than the gain margin.</summary>
    Optimisation,
}

/// <summary>One recommendation: move <see cref="Session"/> from <see cref="From"/> to
/// <see cref="To"/> before <see cref="DeadlineSeconds"/>.</summary>
public readonly record struct MigrationRecommendation(
    int Session,
    int From,
    int To,
    MigrationReason Reason,
    StabilityReasons Cause,
    double Priority,
    double ExpectedLoss,
    double DeadlineSeconds);

/// <summary>Options of <see cref="MigrationPlanner"/>.</summary>
public sealed record MigrationPlannerOptions
{
    /// <summary>Global rate limit (token bucket) so a bad signal cannot start a storm.
    /// <remarks>Defaults to 50 migrations/s with a burst of 100.</remarks></summary>
    public double MaxMigrationsPerSecond { get; init; } = 50;

    public double Burst { get; init; } = 100;

    /// <summary><remarks>Defaults to 0.5.</remarks></summary>
    public double SessionMoveBelow { get; init; } = 0.5;

    /// <summary>A proactive move needs the target's utility to beat the source's by this much.
    /// <remarks>Defaults to 0.3.</remarks></summary>
    public double OptimisationGainMargin { get; init; } = 0.3;

    /// <summary>Share of the remaining tokens a pass may spend on optimisation moves.
    /// <remarks>Defaults to 0.1.</remarks></summary>
    public double OptimisationTokenShare { get; init; } = 0.1;

    /// <summary>Targets compared per session (best by utility first). <remarks>Defaults to 8.</remarks></summary>
    public int TargetsConsidered { get; init; } = 8;

    /// <summary>Utility bonus of a target in a different zone from the source.</summary>
    public double OtherZoneBonus { get; init; } = 0.1;

    public void Validate(string argumentName)
    {
        if (!(MaxMigrationsPerSecond > 0) || !(Burst >= 1) || !(SessionMoveBelow > 0 && SessionMoveBelow < 1) || !(OptimisationGainMargin > 0)
            || !(OptimisationTokenShare >= 0 && OptimisationTokenShare <= 1) || TargetsConsidered < 1 || !(OtherZoneBonus >= 0))
        {
            throw new ArgumentException("MigrationPlannerOptions out of range.", argumentName);
        }
    }
}

/// <summary>
/// Turns endpoint decisions and session scores into migration recommendations, ranked by
/// expected loss (P(interruption) × priority), with targets ranked by utility: score, latency
/// against the SLO, load against capacity, and a different zone from the source. Allocation-free
/// after the first pass at a given size.
/// </summary>
public sealed class MigrationPlanner
{
    private readonly MigrationPlannerOptions _options;
    private MigrationRecommendation[] _candidates = [];
    private int[] _ranked = [];
    private double[] _utility = [];
    private double[] _planned = [];
    private double _tokens;
    private double _lastPlan = double.NaN;

    public MigrationPlanner(MigrationPlannerOptions? options = null)
    {
        _options = options ?? new MigrationPlannerOptions();
        _options.Validate(nameof(options));
        _tokens = _options.Burst;
    }

    /// <summary>Recommendations withheld by the rate limit in the last pass.</summary>
    public int RateLimited { get; private set; }

    /// <summary>Writes up to <paramref name="output"/>.Length recommendations, most urgent
    /// first, and returns how many. Call after <see cref="ClusterPredictor.Evaluate"/> and
    /// <see cref="SessionTable.Evaluate"/>.</summary>
    public int Plan(double nowSeconds, ClusterPredictor cluster, SessionTable sessions, Span<MigrationRecommendation> output)
    {
        ArgumentNullException.ThrowIfNull(cluster);
        ArgumentNullException.ThrowIfNull(sessions);
        RateLimited = 0;
        if (!double.IsFinite(nowSeconds) || cluster.Count == 0 || output.IsEmpty)
        {
            return 0;
        }

        var dt = double.IsNaN(_lastPlan) ? 0 : Math.Max(0, nowSeconds - _lastPlan);
        _lastPlan = nowSeconds;
        _tokens = Math.Min(_options.Burst, _tokens + (dt * _options.MaxMigrationsPerSecond));
        EnsureCapacity(cluster.Count, sessions.Capacity);
        var targets = RankTargets(cluster);

        // Urgent candidates: sessions on evacuating endpoints, and degrading sessions.
        var count = 0;
        for (var id = 0; id < sessions.Capacity; id++)
        {
            if (!sessions.IsActive(id))
            {
                continue;
            }

            var from = sessions.GetEndpoint(id);
            if ((uint)from >= (uint)cluster.Count)
            {
                continue;
            }

            ref readonly var score = ref sessions.GetScore(id);
            ref readonly var endpointScore = ref cluster.GetScore(from);
            MigrationReason reason;
            if (cluster.GetDecision(from) == EndpointDecision.Evacuate)
            {
                reason = MigrationReason.EndpointEvacuating;
            }
            else if (score.Score < _options.SessionMoveBelow && OwnRisk(score) >= 1 - _options.SessionMoveBelow)
            {
                // Only the session's own trends make this a session move. Risk that comes from its
                // endpoint waits for the endpoint's guarded decision (dwell, cap, self-health gate),
                // or every session would leave before the guards had their say.
                reason = MigrationReason.SessionDegrading;
            }
            else
            {
                continue;
            }

            var deadline = !double.IsNaN(endpointScore.NoticeSecondsLeft)
                ? nowSeconds + Math.Max(0, endpointScore.NoticeSecondsLeft - endpointScore.SecondsNeeded)
                : nowSeconds + (cluster.Options.HorizonSeconds * (1 - Math.Max(score.Probability, endpointScore.Probability)));
            var loss = Math.Max(score.ExpectedLoss, endpointScore.Probability * sessions.GetPriority(id));
            _candidates[count++] = new MigrationRecommendation(id, from, -1, reason, endpointScore.Dominant, sessions.GetPriority(id), loss, deadline);
        }

        var urgent = _candidates.AsSpan(0, count);
        urgent.Sort(static (a, b) => b.ExpectedLoss.CompareTo(a.ExpectedLoss));

        var written = 0;
        foreach (ref readonly var c in urgent)
        {
            if (written == output.Length)
            {
                break;
            }

            if (_tokens < 1)
            {
                RateLimited++;
                continue;
            }

            var to = PickTarget(cluster, targets, c.From);
            if (to < 0)
            {
                continue;
            }

            _planned[to]++;
            _tokens--;
            output[written++] = c with { To = to };
        }

        // Proactive moves, from what is left of the budget, only above the gain margin.
        var optimisationBudget = Math.Floor(_tokens * _options.OptimisationTokenShare);
        for (var id = 0; id < sessions.Capacity && optimisationBudget >= 1 && written < output.Length; id++)
        {
            if (!sessions.IsActive(id))
            {
                continue;
            }

            var from = sessions.GetEndpoint(id);
            if ((uint)from >= (uint)cluster.Count || cluster.GetDecision(from) != EndpointDecision.Serve || sessions.GetScore(id).Score < _options.SessionMoveBelow)
            {
                continue;
            }

            var to = PickTarget(cluster, targets, from);
            if (to < 0 || Utility(cluster, to, from) - _utility[from] < _options.OptimisationGainMargin)
            {
                continue;
            }

            _planned[to]++;
            _tokens--;
            optimisationBudget--;
            output[written++] = new MigrationRecommendation(id, from, to, MigrationReason.Optimisation, StabilityReasons.None, sessions.GetPriority(id), 0, nowSeconds + cluster.Options.HorizonSeconds);
        }

        return written;
    }

    private void EnsureCapacity(int endpoints, int sessions)
    {
        if (_utility.Length < endpoints)
        {
            _utility = new double[endpoints];
            _planned = new double[endpoints];
            _ranked = new int[endpoints];
        }

        if (_candidates.Length < sessions)
        {
            _candidates = new MigrationRecommendation[sessions];
        }
    }

    /// <summary>Base utility of each serving endpoint, sorted best first (O(E log E) per pass).</summary>
    private ReadOnlySpan<int> RankTargets(ClusterPredictor cluster)
    {
        var n = cluster.Count;
        var eligible = 0;
        for (var i = 0; i < n; i++)
        {
            _planned[i] = 0;
            _utility[i] = BaseUtility(cluster, i);
            if (cluster.GetDecision(i) == EndpointDecision.Serve && cluster.GetScore(i).Status == ScoreStatus.Ok)
            {
                _ranked[eligible++] = i;
            }
        }

        var ranked = _ranked.AsSpan(0, eligible);
        var utility = _utility;
        for (var i = 1; i < ranked.Length; i++)
        {
            // Insertion sort keeps this allocation-free (no comparison closure); clusters are
            // tens to hundreds of endpoints.
            var key = ranked[i];
            var j = i - 1;
            while (j >= 0 && utility[ranked[j]] < utility[key])
            {
                ranked[j + 1] = ranked[j];
                j--;
            }

            ranked[j + 1] = key;
        }

        return ranked;
    }

    private int PickTarget(ClusterPredictor cluster, ReadOnlySpan<int> ranked, int from)
    {
        var best = -1;
        var bestUtility = double.NegativeInfinity;
        var considered = 0;
        foreach (var candidate in ranked)
        {
            if (candidate == from)
            {
                continue;
            }

            var u = Utility(cluster, candidate, from);
            if (u > bestUtility)
            {
                best = candidate;
                bestUtility = u;
            }

            if (++considered >= _options.TargetsConsidered)
            {
                break;
            }
        }

        return best;
    }

    private double Utility(ClusterPredictor cluster, int target, int from)
    {
        var limits = cluster.GetLimits(target);
        var plannedLoad = _planned[target] / limits.Capacity;
        var zone = cluster.GetZone(target) != cluster.GetZone(from) ? _options.OtherZoneBonus : 0;
        return _utility[target] - (0.3 * plannedLoad) + zone;
    }

    private static double BaseUtility(ClusterPredictor cluster, int i)
    {
        ref readonly var score = ref cluster.GetScore(i);
        var limits = cluster.GetLimits(i);
        var latency = cluster.GetLatencyLevel(i);
        var load = cluster.GetLoad(i);
        var latencyTerm = double.IsNaN(latency) ? 0.5 : Math.Min(2, latency / limits.LatencySloSeconds);
        var loadTerm = double.IsNaN(load) ? 0.5 : Math.Min(2, load / limits.Capacity);
        return score.Score - (0.5 * latencyTerm) - (0.3 * loadTerm);
    }

    /// <summary>The session's probability of interruption from its own latency and throughput trends alone.</summary>
    private static double OwnRisk(in SessionScore score) => 1 - ((1 - score.PLatency) * (1 - score.PThroughput));
}
