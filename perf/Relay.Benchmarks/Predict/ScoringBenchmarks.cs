using BenchmarkDotNet.Attributes;
using Relay.Predict.Planning;
using Relay.Predict.Stability;

namespace Relay.Benchmarks.Predict;

/// <summary>
/// One full scoring pass of 10,000 endpoints (100 clusters × 100) and 100,000 sessions (1,000
/// per cluster), as the daemon runs it once a second: one heartbeat per endpoint ingested (1 Hz
/// agents, to keep the scene alive; about a fifth of the cost), <see cref="ClusterPredictor.Evaluate"/>, <see cref="SessionTable.Evaluate"/>
/// and, separately, <see cref="MigrationPlanner.Plan"/>. Target: ≤ 10 ms per pass (1% of a
/// core at 1 Hz) and 0 B allocated.
/// </summary>
[MemoryDiagnoser]
[Config(typeof(PredictBenchmarkConfig))]
public class ScoringBenchmarks
{
    private const int Clusters = 100;
    private const int EndpointsPerCluster = 100;
    private const int SessionsPerCluster = 1000;

    private ClusterPredictor[] _clusters = [];
    private SessionTable[] _sessions = [];
    private MigrationPlanner[] _planners = [];
    private MigrationRecommendation[] _output = [];
    private double _now;

    [GlobalSetup]
    public void Setup()
    {
        var rng = new Random(42);
        _clusters = new ClusterPredictor[Clusters];
        _sessions = new SessionTable[Clusters];
        _planners = new MigrationPlanner[Clusters];
        _output = new MigrationRecommendation[256];
        for (var c = 0; c < Clusters; c++)
        {
            var cluster = new ClusterPredictor();
            var sessions = new SessionTable(SessionsPerCluster);
            for (var e = 0; e < EndpointsPerCluster; e++)
            {
                cluster.AddEndpoint(e % 3);
            }

            for (var s = 0; s < SessionsPerCluster; s++)
            {
                sessions.Add(rng.Next(EndpointsPerCluster), 1 + rng.Next(3));
            }

            // 60 s of history: heartbeats, requests, load, host metrics, session latency and bytes.
            for (var t = 0.0; t < 60; t += 0.25)
            {
                for (var e = 0; e < EndpointsPerCluster; e++)
                {
                    if (((int)(t * 4) % 4) == 0)
                    {
                        // Agent heartbeats once a second, as the benchmark's pass sends them.
                        cluster.ObserveHeartbeat(e, t - 0.1);
                    }

                    cluster.ObserveRequest(e, t, 0.02 + (0.01 * rng.NextDouble()), rng.NextDouble() < 0.001);
                    if (((int)(t * 4) % 4) == 0)
                    {
                        cluster.ObserveLoad(e, t, 40 + (10 * rng.NextDouble()));
                        cluster.ObserveHost(e, t, 0.4, 0.5);
                    }
                }

                if (((int)(t * 4) % 4) == 0)
                {
                    for (var s = 0; s < SessionsPerCluster; s++)
                    {
                        sessions.ObserveLatency(s, t, 0.02 + (0.01 * rng.NextDouble()));
                        sessions.ObserveBytes(s, t, 10_000);
                    }

                    cluster.Evaluate(t);
                    sessions.Evaluate(t, cluster);
                }
            }

            _clusters[c] = cluster;
            _sessions[c] = sessions;
            _planners[c] = new MigrationPlanner();
        }

        _now = 60;

        // Check the scene once before measuring: scored, healthy, and the planner warmed up.
        ScorePass();
        _planners[0].Plan(_now, _clusters[0], _sessions[0], _output);
        var score = _clusters[0].GetScore(0);
        if (score.Status != ScoreStatus.Ok || score.Score < 0.9 || _sessions[0].GetScore(0).Score < 0.9)
        {
            throw new InvalidOperationException($"unexpected scene: {score}; session {_sessions[0].GetScore(0).Score}");
        }
    }

    /// <summary>Endpoints and sessions scored once (one second of the daemon's loop).</summary>
    [Benchmark]
    public int ScorePass()
    {
        _now += 1.0;
        var evacuating = 0;
        foreach (var cluster in _clusters)
        {
            for (var e = 0; e < EndpointsPerCluster; e++)
            {
                cluster.ObserveHeartbeat(e, _now - 0.1);
            }
        }

        for (var c = 0; c < _clusters.Length; c++)
        {
            evacuating += _clusters[c].Evaluate(_now).Evacuating;
            _sessions[c].Evaluate(_now, _clusters[c]);
        }

        return evacuating;
    }

    /// <summary>The 10,000 endpoints only (heartbeats ingested, then <see cref="ClusterPredictor.Evaluate"/>).</summary>
    [Benchmark]
    public int EndpointPass()
    {
        _now += 1.0;
        var evacuating = 0;
        foreach (var cluster in _clusters)
        {
            for (var e = 0; e < EndpointsPerCluster; e++)
            {
                cluster.ObserveHeartbeat(e, _now - 0.1);
            }

            evacuating += cluster.Evaluate(_now).Evacuating;
        }

        return evacuating;
    }

    /// <summary>The 100,000 sessions only, against the endpoints' latest scores.</summary>
    [Benchmark]
    public void SessionPass()
    {
        _now += 1.0;
        for (var c = 0; c < _clusters.Length; c++)
        {
            _sessions[c].Evaluate(_now, _clusters[c]);
        }
    }

    /// <summary>The 10 Hz liveness pass over 10,000 endpoints (phi and notices only).</summary>
    [Benchmark]
    public int LivenessPass()
    {
        // Same instant every time: the agents' heartbeats are not part of this pass, and moving
        // the clock without them would declare the whole fleet dead after a second.
        var evacuating = 0;
        foreach (var cluster in _clusters)
        {
            evacuating += cluster.EvaluateLiveness(_now + 0.05).Evacuating;
        }

        return evacuating;
    }

    /// <summary>The migration planner over every cluster after a scoring pass.</summary>
    [Benchmark]
    public int PlanPass()
    {
        var total = 0;
        for (var c = 0; c < _clusters.Length; c++)
        {
            total += _planners[c].Plan(_now, _clusters[c], _sessions[c], _output);
        }

        return total;
    }
}
