using Relay.Predict.Stability;

namespace Relay.Predict.Tests.Stability;

public class ClusterPredictorTests
{
    private static readonly EndpointLimits _limits = new() { LatencySloSeconds = 0.25, ErrorRateLimit = 0.2, Capacity = 100 };

    /// <summary>Healthy traffic for [from, to): heartbeats every 200 ms, 20 requests/s at the
    /// given latency, load every second.</summary>
    internal static void Feed(ClusterPredictor p, int endpoint, double from, double to, double latency = 0.025, double errorRate = 0, double load = 40, bool heartbeats = true, int seed = 1)
    {
        var rng = new Random(seed + endpoint);
        for (var t = from; t < to; t += 0.05)
        {
            if (heartbeats && ((int)Math.Round(t / 0.05) % 4) == 0)
            {
                p.ObserveHeartbeat(endpoint, t);
            }

            p.ObserveRequest(endpoint, t, latency * (0.9 + (0.2 * rng.NextDouble())), rng.NextDouble() < errorRate);
            if (((int)Math.Round(t / 0.05) % 20) == 0)
            {
                p.ObserveLoad(endpoint, t, load);
            }
        }
    }

    private static ClusterPredictor Cluster(int n, PredictorOptions? options = null)
    {
        var p = new ClusterPredictor(options);
        for (var i = 0; i < n; i++)
        {
            p.AddEndpoint(i % 3, _limits);
        }

        return p;
    }

    private static void Run(ClusterPredictor p, double from, double to, Action<double>? each = null)
    {
        for (var t = from; t < to; t += 0.1)
        {
            each?.Invoke(t);
            p.Evaluate(t);
        }
    }

    [Fact]
    public void HealthyCluster_ScoresHighAndServes()
    {
        var p = Cluster(4);
        for (var i = 0; i < 4; i++)
        {
            Feed(p, i, 0, 60);
        }

        p.Evaluate(60);
        for (var i = 0; i < 4; i++)
        {
            Assert.True(p.GetScore(i).Score > 0.95, p.GetScore(i).ToString());
            Assert.Equal(ScoreStatus.Ok, p.GetScore(i).Status);
            Assert.Equal(EndpointDecision.Serve, p.GetDecision(i));
        }
    }

    [Fact]
    public void Crash_EvacuatesWithLivenessReasonWithinASecond()
    {
        var p = Cluster(4);
        for (var i = 0; i < 4; i++)
        {
            Feed(p, i, 0, 60);
        }

        Run(p, 0, 60);
        double evacuatedAt = double.NaN;
        for (var t = 60.0; t < 65 && double.IsNaN(evacuatedAt); t += 0.1)
        {
            for (var i = 1; i < 4; i++)
            {
                Feed(p, i, t, t + 0.1);
            }

            p.Evaluate(t + 0.1);
            if (p.GetDecision(0) == EndpointDecision.Evacuate)
            {
                evacuatedAt = t + 0.1;
            }
        }

        Assert.InRange(evacuatedAt - 60, 0.5, 1.2);
        Assert.Equal(StabilityReasons.Liveness, p.GetScore(0).Dominant);
    }

    [Fact]
    public void LatencyRamp_EvacuatesBeforeSloIsCrossed()
    {
        var p = Cluster(4);
        var evacuatedAt = double.NaN;
        for (var t = 0.0; t < 200 && double.IsNaN(evacuatedAt); t += 0.1)
        {
            // Endpoint 0's latency climbs 2 ms/s from t=60 and crosses the 250 ms SLO at t≈172.
            var latency = t < 60 ? 0.025 : 0.025 + (0.002 * (t - 60));
            Feed(p, 0, t, t + 0.1, latency);
            for (var i = 1; i < 4; i++)
            {
                Feed(p, i, t, t + 0.1);
            }

            p.Evaluate(t + 0.1);
            if (p.GetDecision(0) == EndpointDecision.Evacuate)
            {
                evacuatedAt = t + 0.1;
            }
        }

        Assert.True(evacuatedAt >= 60 && evacuatedAt <= 172 - 10, $"evacuated at {evacuatedAt}: {p.GetScore(0)}");
        // Either the trend (latency forecast over the SLO) or the peer comparison fires first.
        Assert.True((p.GetScore(0).Reasons & (StabilityReasons.Latency | StabilityReasons.Outlier)) != 0, p.GetScore(0).ToString());
        Assert.Equal(EndpointDecision.Serve, p.GetDecision(1));
    }

    [Fact]
    public void LatencyRampOnLoneEndpoint_EvacuatesOnForecastBeforeSlo()
    {
        // One endpoint: no peers, so only the Holt forecast against the SLO can act.
        var p = Cluster(1);
        var evacuatedAt = double.NaN;
        for (var t = 0.0; t < 200 && double.IsNaN(evacuatedAt); t += 0.1)
        {
            var latency = t < 60 ? 0.025 : 0.025 + (0.002 * (t - 60));
            Feed(p, 0, t, t + 0.1, latency);
            p.Evaluate(t + 0.1);
            if (p.GetDecision(0) == EndpointDecision.Evacuate)
            {
                evacuatedAt = t + 0.1;
            }
        }

        Assert.True(evacuatedAt >= 60 && evacuatedAt <= 172 - 10, $"evacuated at {evacuatedAt}: {p.GetScore(0)}");
        Assert.Equal(StabilityReasons.Latency, p.GetScore(0).Dominant);
    }

    [Fact]
    public void Notice_EvacuatesWhenTimeLeftIsShorterThanNeededPlusHorizon()
    {
        var p = Cluster(3);
        for (var i = 0; i < 3; i++)
        {
            Feed(p, i, 0, 30);
        }

        p.Evaluate(30);
        p.ObserveInterruptionNotice(0, 30, interruptAtSeconds: 200);
        p.Evaluate(30.1);
        Assert.Equal(EndpointDecision.Serve, p.GetDecision(0));
        Assert.Equal(169.9, p.GetScore(0).NoticeSecondsLeft, 6);

        p.ObserveInterruptionNotice(0, 30.2, interruptAtSeconds: 60);
        p.Evaluate(30.3);
        Assert.Equal(EndpointDecision.Evacuate, p.GetDecision(0));
        Assert.Equal(StabilityReasons.Notice, p.GetScore(0).Dominant);
    }

    [Fact]
    public void SoftReason_WaitsForDwellAndRestoresOnlyAfterHysteresis()
    {
        var options = new PredictorOptions { SoftDwellSeconds = 2, RestoreDwellSeconds = 10 };
        var p = Cluster(4, options);
        for (var i = 0; i < 4; i++)
        {
            Feed(p, i, 0, 30);
        }

        p.Evaluate(30);
        p.ObserveHost(0, 30, cpu: 1.0, memory: 0.5);
        p.Evaluate(30.1);
        Assert.True(p.GetScore(0).Score < options.EvacuateBelow);
        Assert.Equal(EndpointDecision.Watch, p.GetDecision(0));
        FeedAll(30.1, 31.5);
        p.Evaluate(31.5);
        Assert.Equal(EndpointDecision.Watch, p.GetDecision(0));
        FeedAll(31.5, 32.2);
        p.Evaluate(32.2);
        Assert.Equal(EndpointDecision.Evacuate, p.GetDecision(0));

        // CPU recovers slowly (EWMA): restore only once the score stays above RestoreAbove for 10 s.
        var restoredAt = double.NaN;
        for (var t = 32.3; t < 120 && double.IsNaN(restoredAt); t += 0.5)
        {
            FeedAll(t, t + 0.5);
            p.ObserveHost(0, t, 0.2, 0.5);
            p.Evaluate(t);
            if (p.GetDecision(0) == EndpointDecision.Serve)
            {
                restoredAt = t;
            }
        }

        Assert.True(restoredAt > 42, $"restored at {restoredAt}");

        void FeedAll(double from, double to)
        {
            for (var i = 0; i < 4; i++)
            {
                Feed(p, i, from, to);
            }
        }
    }

    [Fact]
    public void Cap_LimitsSoftEvacuationsToShareOfCluster()
    {
        var p = Cluster(6, new PredictorOptions { MaxEvacuatedShare = 0.34 });
        for (var i = 0; i < 6; i++)
        {
            Feed(p, i, 0, 30);
        }

        for (var t = 30.0; t < 40; t += 0.5)
        {
            for (var i = 0; i < 6; i++)
            {
                Feed(p, i, t, t + 0.5);
            }

            for (var i = 0; i < 4; i++)
            {
                p.ObserveHost(i, t, 1.0, 0.5);
            }

            var summary = p.Evaluate(t + 0.5);
            Assert.True(summary.Evacuating <= 2, $"{summary}");
        }

        var final = p.Evaluate(40.1);
        Assert.Equal(2, final.Evacuating);
        Assert.Equal(2, final.HeldByCap);
    }

    [Fact]
    public void Cap_DoesNotHoldBackDeadEndpoints()
    {
        var p = Cluster(3, new PredictorOptions { MaxEvacuatedShare = 0.34 });
        for (var i = 0; i < 3; i++)
        {
            Feed(p, i, 0, 30);
        }

        p.Evaluate(30);
        var summary = p.Evaluate(35);
        Assert.Equal(3, summary.Evacuating);
    }

    [Fact]
    public void SelfHealthGate_SuppressesSoftButNotHardEvacuations()
    {
        var p = Cluster(4, new PredictorOptions { MaxEvacuatedShare = 0.5 });
        for (var i = 0; i < 4; i++)
        {
            Feed(p, i, 0, 30);
        }

        p.SetSelfHealth(cpu: 0.99, schedulingLagSeconds: 0.5);
        Assert.False(p.SelfHealthy);
        for (var t = 30.0; t < 40; t += 0.5)
        {
            p.ObserveHost(0, t, 1.0, 0.5);
            Feed(p, 0, t, t + 0.5);
            Feed(p, 2, t, t + 0.5);
            Feed(p, 3, t, t + 0.5);
            var summary = p.Evaluate(t + 0.5);
            if (t > 33)
            {
                Assert.Equal(1, summary.HeldBySelfHealth);
            }
        }

        Assert.Equal(EndpointDecision.Watch, p.GetDecision(0));
        Assert.Equal(EndpointDecision.Evacuate, p.GetDecision(1));
        p.SetSelfHealth(0.3, 0.01);
        p.ObserveHost(0, 40.1, 1.0, 0.5);
        p.Evaluate(40.2);
        Assert.Equal(EndpointDecision.Evacuate, p.GetDecision(0));
    }

    [Fact]
    public void PeerOutlier_FlagsOneSlowEndpoint()
    {
        var p = Cluster(5);
        for (var t = 0.0; t < 60; t += 1)
        {
            Feed(p, 0, t, t + 1, latency: t < 20 ? 0.025 : 0.12);
            for (var i = 1; i < 5; i++)
            {
                Feed(p, i, t, t + 1);
            }

            p.Evaluate(t + 1);
        }

        Assert.True(p.GetScore(0).POutlier > 0.9, p.GetScore(0).ToString());
        Assert.True(p.GetScore(0).LatencyShift, p.GetScore(0).ToString());
        Assert.True(p.GetScore(1).POutlier < 0.01);
        Assert.False(p.GetScore(1).LatencyShift);
        Assert.Equal(EndpointDecision.Evacuate, p.GetDecision(0));
    }

    [Fact]
    public void Flapping_BacksOffRestoreDwell()
    {
        var options = new PredictorOptions { RestoreDwellSeconds = 5, FlapWindowSeconds = 300 };
        var p = Cluster(3, options);
        var t = 0.0;
        var restores = 0;
        var wasEvacuated = false;
        var evacuations = 0;
        for (var cycle = 0; cycle < 8; cycle++)
        {
            // 20 s up, 3 s down.
            for (var end = t + 20; t < end; t += 0.1)
            {
                Feed(p, 0, t, t + 0.1);
                Feed(p, 1, t, t + 0.1);
                Feed(p, 2, t, t + 0.1);
                p.Evaluate(t + 0.1);
                Track();
            }

            for (var end = t + 3; t < end; t += 0.1)
            {
                Feed(p, 1, t, t + 0.1);
                Feed(p, 2, t, t + 0.1);
                p.Evaluate(t + 0.1);
                Track();
            }
        }

        // Without back-off it would be evacuated 8 times; with doubling dwell it stays out.
        Assert.True(evacuations <= 3, $"evacuations {evacuations}, restores {restores}");
        Assert.True(p.GetFlapCount(0) >= 1);

        void Track()
        {
            var now = p.GetDecision(0) == EndpointDecision.Evacuate;
            if (now && !wasEvacuated)
            {
                evacuations++;
            }
            else if (!now && wasEvacuated)
            {
                restores++;
            }

            wasEvacuated = now;
        }
    }
}
