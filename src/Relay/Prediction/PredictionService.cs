using System.Collections.Concurrent;
using Prometheus;
using Relay.Clusters;
using Relay.Configuration;
using Relay.Echo.Splice;
using Relay.Health;
using Relay.Predict.Planning;
using Relay.Predict.Stability;

namespace Relay.Prediction;

/// <summary>
/// Relay.Predict in the relay (docs/prediction.md "Wired into the relay"): on a timer on the
/// runtime's <see cref="TimeProvider"/> it feeds one <see cref="ClusterPredictor"/> per cluster with
/// probe results, connect failures, resets, session starts, load, agent CPU and interruption
/// notices; runs the liveness pass every <c>prediction.interval</c> and the full pass, the session
/// table and the <see cref="MigrationPlanner"/> every <c>prediction.evaluateInterval</c>; and moves
/// echoed sessions on the recommendations (splice trigger health), at most
/// <c>echo.maxConcurrentMigrations</c> at a time. While it runs, EchoManager's health-based
/// evacuation is off. All model state is behind one lock: one writer (the timer), readers copy.
/// </summary>
public sealed class PredictionService : IAsyncDisposable
{
    internal const int RecentCapacity = 256;
    internal static readonly TimeSpan RetryAfterFailure = TimeSpan.FromSeconds(5);
    private const int MaxSamplesPerTick = 1000;

    private readonly RelayRuntime _runtime;
    private readonly IEchoSignals _echo;
    private readonly ILogger _logger;
    private readonly PredictClock _clock;
    private readonly PredictorOptions _options;
    private readonly MigrationPlannerOptions _plannerOptions;
    private readonly object _gate = new();
    private readonly ConcurrentQueue<ProbeOutcome> _probes = new();
    private readonly Dictionary<string, ClusterModel> _clusters = new(StringComparer.Ordinal);
    private readonly Dictionary<string, RouteScaling> _scaling = new(StringComparer.Ordinal);
    private readonly Dictionary<long, MigrationRecord> _inFlight = [];
    private readonly Dictionary<long, double> _retryAt = [];
    private readonly Queue<MigrationRecord> _recent = new();
    private readonly List<EchoedSession> _sessions = [];
    private readonly Dictionary<string, AgentReport> _heartbeats = new(StringComparer.Ordinal);
    private readonly Gauge _scoreGauge;
    private readonly Counter _recommendedCounter;
    private readonly CancellationTokenSource _stop = new();
    private MigrationRecommendation[] _plan = new MigrationRecommendation[256];
    private double _lastTick = double.NegativeInfinity;
    private double _nextEvaluate = double.NegativeInfinity;
    private double _lagSeconds;
    private bool _sessionsCollected;
    private long _nextRecord;
    private Task? _loop;

    internal PredictionService(RelayRuntime runtime, IEchoSignals echo, ILogger logger)
    {
        _runtime = runtime;
        _echo = echo;
        _logger = logger;
        Config = runtime.Snapshot.Config.Prediction;
        _clock = new PredictClock(runtime.TimeProvider);
        _options = new PredictorOptions
        {
            HorizonSeconds = Config.Horizon.TotalSeconds,
            EvacuateBelow = Config.Threshold,
            RestoreAbove = Config.RestoreAbove,
        };
        _plannerOptions = new MigrationPlannerOptions
        {
            MaxMigrationsPerSecond = Config.MaxMigrationsPerSecond,
            Burst = Math.Max(1, 2 * Config.MaxMigrationsPerSecond),
        };
        var factory = Metrics.WithCustomRegistry(runtime.Metrics.Registry);
        _scoreGauge = factory.CreateGauge("relay_endpoint_score", "Relay.Predict's stability score (1 - P(interruption within the horizon)) per endpoint.", "cluster", "endpoint");
        _recommendedCounter = factory.CreateCounter("relay_migrations_recommended_total", "Migration recommendations the prediction service acted on, by reason (endpoint_evacuating, session_degrading, optimisation).", "reason");
    }

    public PredictionConfig Config { get; }

    public bool Enabled => Config.Enabled;

    /// <summary>Hook for <see cref="ActiveHealthProber.ProbeCompleted"/>; safe from any thread.</summary>
    public void OnProbe(ProbeOutcome outcome)
    {
        if (Enabled)
        {
            _probes.Enqueue(outcome);
        }
    }

    /// <summary>Starts the timer when prediction is enabled and turns the health-based evacuation off.</summary>
    public void Start()
    {
        if (!Enabled || _loop is not null)
        {
            return;
        }

        _echo.HealthEvacuation = false;
        PredictionLog.Started(_logger, _runtime.Snapshot.Clusters.Count, Config.Interval.TotalMilliseconds, Config.EvaluateInterval.TotalMilliseconds, Config.Horizon.TotalSeconds, Config.Threshold);
        _loop = Task.Run(() => RunAsync(_stop.Token));
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        if (_loop is not null)
        {
            try
            {
                await _loop.ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                // Stopping.
            }

            _echo.HealthEvacuation = true;
        }

        lock (_gate)
        {
            foreach (var model in _clusters.Values)
            {
                model.ClearFlags();
            }
        }

        _stop.Dispose();
    }

    private async Task RunAsync(CancellationToken cancellationToken)
    {
        var time = _runtime.TimeProvider;
        using var timer = new PeriodicTimer(Config.Interval, time);
        var last = time.GetTimestamp();
        while (await timer.WaitForNextTickAsync(cancellationToken).ConfigureAwait(false))
        {
            var now = time.GetTimestamp();
            _lagSeconds = Math.Max(0, (time.GetElapsedTime(last, now) - Config.Interval).TotalSeconds);
            last = now;
            try
            {
                Tick();
            }
#pragma warning disable CA1031 // One bad pass must not stop scoring; the next runs on schedule.
            catch (Exception ex)
#pragma warning restore CA1031
            {
                PredictionLog.PassFailed(_logger, ex);
            }
        }
    }

    /// <summary>One pass: collect signals, score (liveness, or everything when the full pass is due), plan and start moves.</summary>
    internal void Tick()
    {
        lock (_gate)
        {
            var now = _clock.NowSeconds;
            if (now < _lastTick)
            {
                return;
            }

            _lastTick = now;
            _sessionsCollected = false;
            SyncClusters();
            DrainProbes(now);
            CollectSignals(now);
            var full = now >= _nextEvaluate;
            if (full)
            {
                _nextEvaluate = now + Config.EvaluateInterval.TotalSeconds;
            }

            foreach (var model in _clusters.Values)
            {
                model.Predictor.SetSelfHealth(0, _lagSeconds);
                if (full)
                {
                    for (var i = 0; i < model.Count; i++)
                    {
                        model.Predictor.ObserveLoad(i, now, model.Endpoints[i].ActiveSessions);
                    }
                }

                var summary = full ? model.Predictor.Evaluate(now) : model.Predictor.EvaluateLiveness(now);
                if (summary.Status is not (ScoreStatus.Ok or ScoreStatus.NoHistory))
                {
                    PredictionLog.EvaluationHeld(_logger, model.Name, summary.Status);
                }

                UpdateDecisions(model);
                if (full || summary.NewlyEvacuated > 0)
                {
                    Plan(model, now);
                }

                if (full)
                {
                    for (var i = 0; i < model.Count; i++)
                    {
                        _scoreGauge.WithLabels(model.Name, model.Ids[i]).Set(model.Predictor.GetScore(i).Score);
                    }
                }
            }

            if (full)
            {
                ObserveScaling(now);
            }
        }
    }

    // ---- signals ----

    private void SyncClusters()
    {
        var clusters = _runtime.Snapshot.Clusters;
        foreach (var (name, cluster) in clusters)
        {
            if (_clusters.TryGetValue(name, out var model) && model.Matches(cluster))
            {
                continue;
            }

            if (model is not null)
            {
                model.ClearFlags();
                PredictionLog.ClusterRebuilt(_logger, name);
            }

            _clusters[name] = new ClusterModel(cluster, _options, _plannerOptions, Config, _echo.MaxConcurrentMigrations);
        }

        foreach (var name in _clusters.Keys.Where(n => !clusters.ContainsKey(n)).ToList())
        {
            _clusters[name].ClearFlags();
            _clusters.Remove(name);
        }
    }

    private void DrainProbes(double now)
    {
        var batch = new List<ProbeOutcome>();
        while (_probes.TryDequeue(out var probe))
        {
            batch.Add(probe);
        }

        batch.Sort(static (a, b) => a.Timestamp.CompareTo(b.Timestamp));
        foreach (var probe in batch)
        {
            if (!_clusters.TryGetValue(probe.Endpoint.ClusterName, out var model) || !model.Index.TryGetValue(probe.Endpoint.Id, out var i))
            {
                continue;
            }

            var seconds = probe.Duration.TotalSeconds;
            if (probe.Success)
            {
                // A probe that connected is a heartbeat (phi accrual) and a request with its connect latency.
                model.Predictor.ObserveHeartbeat(i, Math.Min(now, _clock.ToSeconds(probe.Timestamp)));
                model.Predictor.ObserveRequest(i, now, seconds, failed: false);
                model.LastRtt[i] = seconds;
            }
            else
            {
                model.Predictor.ObserveRequest(i, now, seconds, failed: true);
            }
        }
    }

    private void CollectSignals(double now)
    {
        _heartbeats.Clear();
        _echo.CollectHeartbeats(_heartbeats);
        var utcNow = _runtime.TimeProvider.GetUtcNow();
        foreach (var model in _clusters.Values)
        {
            for (var i = 0; i < model.Count; i++)
            {
                var endpoint = model.Endpoints[i];
                var predictor = model.Predictor;

                // Sessions started are requests that connected (at the last probe's connect time);
                // connect failures and upstream resets are failed ones.
                var started = endpoint.TotalSessions;
                var failures = endpoint.ConnectFailures + endpoint.Resets;
                var newStarts = Math.Min(MaxSamplesPerTick, started - model.LastStarted[i]);
                var newFailures = Math.Min(MaxSamplesPerTick, failures - model.LastFailures[i]);
                model.LastStarted[i] = started;
                model.LastFailures[i] = failures;
                if (!double.IsNaN(model.LastRtt[i]))
                {
                    for (var n = 0; n < newStarts; n++)
                    {
                        predictor.ObserveRequest(i, now, model.LastRtt[i], failed: false);
                    }
                }

                for (var n = 0; n < newFailures; n++)
                {
                    predictor.ObserveRequest(i, now, 0, failed: true);
                }

                // The agent's heartbeat carries the host's CPU busy share and memory in use of its total.
                if (_heartbeats.TryGetValue(endpoint.Id, out var beat) && beat.At != model.LastHeartbeat[i])
                {
                    model.LastHeartbeat[i] = beat.At;
                    predictor.ObserveHost(i, now, Math.Clamp(beat.CpuPercent / 100, 0, 1), Math.Clamp(beat.MemoryShare, 0, 1));
                }

                var notice = _echo.NoticeFor(endpoint.Id);
                if (notice != model.LastNotice[i])
                {
                    model.LastNotice[i] = notice;
                    predictor.ObserveInterruptionNotice(i, now, notice is { } at ? now + Math.Max(0, (at - utcNow).TotalSeconds) : double.NaN);
                }
            }
        }
    }

    private void UpdateDecisions(ClusterModel model)
    {
        var evacuating = 0;
        for (var i = 0; i < model.Count; i++)
        {
            var evacuate = model.Predictor.GetDecision(i) == EndpointDecision.Evacuate;
            if (evacuate != model.Evacuating[i])
            {
                model.Evacuating[i] = evacuate;
                var line = model.Predictor.GetScore(i).ToString();
                if (evacuate)
                {
                    PredictionLog.Evacuating(_logger, model.Ids[i], model.Name, line);
                }
                else
                {
                    PredictionLog.Restored(_logger, model.Ids[i], model.Name, line);
                }
            }

            if (evacuate)
            {
                evacuating++;
            }
        }

        // Fail open: a prediction that every endpoint fails would refuse every new session.
        var failOpen = evacuating > 0 && evacuating == model.Count;
        if (failOpen && !model.FailOpen)
        {
            PredictionLog.FailOpen(_logger, model.Name);
        }

        model.FailOpen = failOpen;
        for (var i = 0; i < model.Count; i++)
        {
            model.Endpoints[i].PredictedUnstable = model.Evacuating[i] && !failOpen;
            model.Endpoints[i].PredictedScore = model.Predictor.GetScore(i).Score;
        }
    }

    // ---- sessions and migrations ----

    private void Plan(ClusterModel model, double now)
    {
        if (!_sessionsCollected)
        {
            _sessions.Clear();
            _echo.CollectSessions(_sessions);
            _sessionsCollected = true;
        }

        var routes = _runtime.Snapshot.Config.Routes;
        model.SyncSessions(_sessions.Where(s => routes.TryGetValue(s.Route, out var r) && r.Cluster == model.Name));
        model.Sessions.Evaluate(now, model.Predictor);
        if (_plan.Length < model.Sessions.Count)
        {
            _plan = new MigrationRecommendation[Math.Max(_plan.Length * 2, model.Sessions.Count)];
        }

        var count = model.Planner.Plan(now, model.Predictor, model.Sessions, _plan);
        model.RateLimited += model.Planner.RateLimited;
        for (var n = 0; n < count; n++)
        {
            Execute(model, _plan[n], now);
        }
    }

    private void Execute(ClusterModel model, MigrationRecommendation recommendation, double now)
    {
        var sessionId = model.SessionIds[recommendation.Session];
        if (_inFlight.ContainsKey(sessionId) || (_retryAt.TryGetValue(sessionId, out var retry) && now < retry))
        {
            Counters.Suppressed++;
            return;
        }

        _retryAt.Remove(sessionId);
        if (recommendation.Reason == MigrationReason.Optimisation && !Config.Optimise)
        {
            Counters.SkippedOptimisation++;
            return;
        }

        if (_inFlight.Count >= _echo.MaxConcurrentMigrations)
        {
            Counters.Deferred++;
            return;
        }

        var session = model.Echoed[recommendation.Session];
        var from = model.Ids[recommendation.From];
        var planned = recommendation.To >= 0 ? model.Ids[recommendation.To] : null;
        var record = new MigrationRecord
        {
            Id = ++_nextRecord,
            At = _runtime.TimeProvider.GetUtcNow(),
            SessionId = sessionId,
            Cluster = model.Name,
            From = from,
            Recommended = planned,
            Reason = recommendation.Reason,
            Cause = recommendation.Cause,
            Priority = recommendation.Priority,
            ExpectedLoss = recommendation.ExpectedLoss,
            DeadlineSeconds = recommendation.DeadlineSeconds - now,
            Score = model.Predictor.GetScore(recommendation.From).Score,
        };
        Remember(record);
        _recommendedCounter.WithLabels(Label(recommendation.Reason)).Inc();
        Counters.Recommended++;

        // The move needs a Ready shadow: the planner's target when the session has one there,
        // otherwise the best-scored serving endpoint among its Ready shadows.
        string? target = null;
        if (planned is not null && session.ReadyShadows.Contains(planned))
        {
            target = planned;
        }
        else
        {
            var best = double.NegativeInfinity;
            foreach (var shadow in session.ReadyShadows)
            {
                if (model.Index.TryGetValue(shadow, out var j) && model.Predictor.GetDecision(j) == EndpointDecision.Serve && model.Predictor.GetScore(j).Score > best)
                {
                    best = model.Predictor.GetScore(j).Score;
                    target = shadow;
                }
            }
        }

        if (target is null)
        {
            record.Action = "skipped";
            record.Detail = session.ReadyShadows.IsEmpty ? "the session has no Ready shadow" : "none of its Ready shadows is on a serving endpoint";
            _retryAt[sessionId] = now + RetryAfterFailure.TotalSeconds;
            Counters.Skipped++;
            PredictionLog.Skipped(_logger, sessionId, from, record.Detail);
            return;
        }

        record.Target = target;
        record.Action = "migrating";
        _inFlight[sessionId] = record;
        Counters.Started++;
        PredictionLog.Recommended(_logger, sessionId, from, target, recommendation.Reason, recommendation.Cause.ToString(), recommendation.ExpectedLoss, record.DeadlineSeconds);
        _ = MigrateAsync(record);
    }

    private async Task MigrateAsync(MigrationRecord record)
    {
        SpliceOutcome? outcome;
        string? failure = null;
        try
        {
            outcome = await _echo.MigrateAsync(record.SessionId, record.Target, SpliceTrigger.Health).ConfigureAwait(false);
        }
#pragma warning disable CA1031 // Whatever went wrong is recorded against the recommendation.
        catch (Exception ex)
#pragma warning restore CA1031
        {
            outcome = null;
            failure = ex.Message;
        }

        lock (_gate)
        {
            _inFlight.Remove(record.SessionId);
            record.FinishedAt = _runtime.TimeProvider.GetUtcNow();
            if (outcome is { Spliced: true })
            {
                record.Action = "spliced";
                record.Target = outcome.To;
                record.BlackoutMs = outcome.BlackoutMs;
                Counters.Spliced++;
                PredictionLog.Moved(_logger, record.SessionId, record.From, outcome.To ?? "?", outcome.BlackoutMs);
            }
            else
            {
                record.Action = outcome is null && failure is null ? "gone" : "failed";
                record.Detail = failure ?? outcome?.Failure ?? "the session ended";
                if (outcome is not null || failure is not null)
                {
                    Counters.Failed++;
                    _retryAt[record.SessionId] = _clock.NowSeconds + RetryAfterFailure.TotalSeconds;
                    PredictionLog.MoveFailed(_logger, record.SessionId, record.From, record.Detail, RetryAfterFailure.TotalSeconds);
                }
            }
        }
    }

    private void Remember(MigrationRecord record)
    {
        _recent.Enqueue(record);
        while (_recent.Count > RecentCapacity)
        {
            _recent.Dequeue();
        }
    }

    internal static string Label(MigrationReason reason) => reason switch
    {
        MigrationReason.EndpointEvacuating => "endpoint_evacuating",
        MigrationReason.SessionDegrading => "session_degrading",
        _ => "optimisation",
    };

    // ---- scaling ----

    private void ObserveScaling(double now)
    {
        var config = _runtime.Snapshot.Config;
        foreach (var route in config.Routes.Values)
        {
            if (!_clusters.TryGetValue(route.Cluster, out var model))
            {
                continue;
            }

            if (!_scaling.TryGetValue(route.Name, out var scaling) || scaling.Cluster != route.Cluster)
            {
                scaling = new RouteScaling(route.Cluster, new ScalingAdvisor(new ScalingOptions { CapacityPerEndpoint = Config.EndpointCapacity }));
                _scaling[route.Name] = scaling;
            }

            long arrivals = 0;
            double concurrency = 0;
            foreach (var endpoint in model.Endpoints)
            {
                arrivals += endpoint.TotalSessions;
                concurrency += endpoint.ActiveSessions;
            }

            var rate = double.IsNaN(scaling.LastTime) || now <= scaling.LastTime ? 0 : Math.Max(0, arrivals - scaling.LastArrivals) / (now - scaling.LastTime);
            scaling.LastArrivals = arrivals;
            scaling.LastTime = now;
            scaling.Advisor.Observe(now, rate, concurrency);
        }

        foreach (var name in _scaling.Keys.Where(n => !config.Routes.ContainsKey(n)).ToList())
        {
            _scaling.Remove(name);
        }
    }

    // ---- views for the admin API ----

    internal PredictionCounters Counters { get; } = new();

    /// <summary>The endpoint's score view, or null when prediction is off or the endpoint is unknown.</summary>
    internal EndpointScoreView? ScoreOf(string cluster, string endpoint)
    {
        lock (_gate)
        {
            if (!_clusters.TryGetValue(cluster, out var model) || !model.Index.TryGetValue(endpoint, out var i))
            {
                return null;
            }

            var s = model.Predictor.GetScore(i);
            return new EndpointScoreView(
                Finite(s.Score),
                Finite(s.Probability),
                s.Status.ToString(),
                model.Predictor.GetDecision(i).ToString(),
                model.FailOpen,
                Flags(s.Reasons),
                s.Dominant == StabilityReasons.None ? null : s.Dominant.ToString(),
                new ScoreComponents(Finite(s.Phi), Finite(s.PLiveness), Finite(s.PLatency), Finite(s.PErrors), Finite(s.PLoad), Finite(s.PHost), Finite(s.PNotice), Finite(s.POutlier), Finite(s.PPauses)),
                new ScoreForecasts(
                    Finite(s.LatencyForecastSeconds * 1000),
                    Finite(s.ErrorRateForecast),
                    Finite(s.LoadForecast),
                    Finite(s.PauseForecastSeconds * 1000),
                    Finite(s.NoticeSecondsLeft),
                    Finite(s.SecondsNeeded),
                    s.LatencyShift),
                s.ToString());
        }
    }

    internal RecommendationsView Recommendations(int limit)
    {
        lock (_gate)
        {
            var recent = _recent.Reverse().Take(limit).Select(r => r.View()).ToList();
            var clusters = _clusters.Values.ToDictionary(m => m.Name, m => m.RateLimited, StringComparer.Ordinal);
            return new RecommendationsView(Enabled, Counters.Snapshot(), _inFlight.Count, _echo.MaxConcurrentMigrations, clusters, recent);
        }
    }

    internal List<ScalingView> Scaling()
    {
        lock (_gate)
        {
            var views = new List<ScalingView>();
            foreach (var (route, scaling) in _scaling.OrderBy(p => p.Key, StringComparer.Ordinal))
            {
                var current = _clusters.TryGetValue(scaling.Cluster, out var model) ? model.Count : 0;
                var r = scaling.Advisor.Recommend(current);
                views.Add(new ScalingView(
                    route,
                    scaling.Cluster,
                    r.Current,
                    r.Desired,
                    r.Direction.ToString(),
                    r.Basis.ToString(),
                    r.ObservedConcurrency,
                    Finite(r.ForecastConcurrency),
                    Finite(r.ForecastUpper),
                    Finite(scaling.Advisor.ArrivalsForecastPerSecond),
                    r.LeadTimeSeconds));
            }

            return views;
        }
    }

    private static double? Finite(double value) => double.IsFinite(value) ? value : null;

    private static List<string> Flags(StabilityReasons reasons) =>
        [.. Enum.GetValues<StabilityReasons>().Where(r => r != StabilityReasons.None && reasons.HasFlag(r)).Select(r => r.ToString())];

    private sealed class RouteScaling(string cluster, ScalingAdvisor advisor)
    {
        public string Cluster { get; } = cluster;

        public ScalingAdvisor Advisor { get; } = advisor;

        public long LastArrivals { get; set; }

        public double LastTime { get; set; } = double.NaN;
    }
}
