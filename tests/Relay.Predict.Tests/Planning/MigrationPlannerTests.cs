using Relay.Predict.Planning;
using Relay.Predict.Stability;
using Relay.Predict.Tests.Stability;

namespace Relay.Predict.Tests.Planning;

public class MigrationPlannerTests
{
    private static (ClusterPredictor Cluster, SessionTable Sessions) Setup(int endpoints, int sessionsPerEndpoint)
    {
        var cluster = new ClusterPredictor();
        for (var i = 0; i < endpoints; i++)
        {
            cluster.AddEndpoint(zone: i % 2);
        }

        var sessions = new SessionTable(endpoints * sessionsPerEndpoint * 2);
        for (var i = 0; i < endpoints; i++)
        {
            for (var k = 0; k < sessionsPerEndpoint; k++)
            {
                sessions.Add(i, priority: 1 + k);
            }
        }

        return (cluster, sessions);
    }

    private static void FeedAll(ClusterPredictor cluster, double from, double to, int skip = -1)
    {
        for (var t = from; t < to; t += 0.5)
        {
            for (var i = 0; i < cluster.Count; i++)
            {
                if (i != skip)
                {
                    ClusterPredictorTests.Feed(cluster, i, t, t + 0.5);
                }
            }

            cluster.Evaluate(t + 0.5);
        }
    }

    [Fact]
    public void HealthyCluster_RecommendsNothing()
    {
        var (cluster, sessions) = Setup(4, 5);
        FeedAll(cluster, 0, 30);
        sessions.Evaluate(30, cluster);
        var planner = new MigrationPlanner();
        Span<MigrationRecommendation> output = new MigrationRecommendation[64];
        Assert.Equal(0, planner.Plan(30, cluster, sessions, output));
    }

    [Fact]
    public void EvacuatingEndpoint_MovesAllItsSessionsHighestPriorityFirstToOtherZone()
    {
        var (cluster, sessions) = Setup(4, 5);
        FeedAll(cluster, 0, 30);
        FeedAll(cluster, 30, 33, skip: 0);
        Assert.Equal(EndpointDecision.Evacuate, cluster.GetDecision(0));
        sessions.Evaluate(33, cluster);

        var planner = new MigrationPlanner();
        var output = new MigrationRecommendation[64];
        var count = planner.Plan(33, cluster, sessions, output);

        Assert.Equal(5, count);
        for (var i = 0; i < count; i++)
        {
            var r = output[i];
            Assert.Equal(0, r.From);
            Assert.NotEqual(0, r.To);
            Assert.Equal(MigrationReason.EndpointEvacuating, r.Reason);
            Assert.Equal(StabilityReasons.Liveness, r.Cause);
            Assert.True(r.DeadlineSeconds <= 33 + cluster.Options.HorizonSeconds);
            if (i > 0)
            {
                Assert.True(output[i - 1].ExpectedLoss >= r.ExpectedLoss);
            }
        }

        Assert.Equal(5, output[0].Priority);

        // Zone 0 is the source's; the other zone gets the first move.
        Assert.Equal(1, cluster.GetZone(output[0].To));
    }

    [Fact]
    public void RateLimit_CapsMigrationsPerPassAndRefills()
    {
        var (cluster, sessions) = Setup(4, 50);
        FeedAll(cluster, 0, 30);
        FeedAll(cluster, 30, 33, skip: 0);
        sessions.Evaluate(33, cluster);
        var planner = new MigrationPlanner(new MigrationPlannerOptions { MaxMigrationsPerSecond = 10, Burst = 20 });
        var output = new MigrationRecommendation[256];
        Assert.Equal(20, planner.Plan(33, cluster, sessions, output));
        Assert.Equal(30, planner.RateLimited);
        Assert.Equal(10, planner.Plan(34, cluster, sessions, output));
    }

    [Fact]
    public void Optimisation_OnlyAboveGainMargin()
    {
        var cluster = new ClusterPredictor();
        for (var i = 0; i < 3; i++)
        {
            cluster.AddEndpoint(0);
        }

        var sessions = new SessionTable(16);
        var s = sessions.Add(0);

        // Endpoint 0 is slow-ish and loaded (but not failing); 1 and 2 are fast and idle.
        for (var t = 0.0; t < 30; t += 0.5)
        {
            ClusterPredictorTests.Feed(cluster, 0, t, t + 0.5, latency: 0.04, load: 90);
            ClusterPredictorTests.Feed(cluster, 1, t, t + 0.5, latency: 0.02, load: 10);
            ClusterPredictorTests.Feed(cluster, 2, t, t + 0.5, latency: 0.02, load: 10);
            cluster.Evaluate(t + 0.5);
        }

        sessions.Evaluate(30, cluster);
        var output = new MigrationRecommendation[8];
        var strict = new MigrationPlanner(new MigrationPlannerOptions { OptimisationGainMargin = 1.0 });
        Assert.Equal(0, strict.Plan(30, cluster, sessions, output));

        var lenient = new MigrationPlanner(new MigrationPlannerOptions { OptimisationGainMargin = 0.2 });
        Assert.Equal(1, lenient.Plan(30, cluster, sessions, output));
        Assert.Equal(MigrationReason.Optimisation, output[0].Reason);
        Assert.Equal(s, output[0].Session);
        Assert.NotEqual(0, output[0].To);
    }

    [Fact]
    public void DegradingSession_MovesEvenWhenEndpointIsFine()
    {
        var (cluster, sessions) = Setup(3, 1);
        for (var t = 0.0; t < 60; t += 0.5)
        {
            for (var i = 0; i < 3; i++)
            {
                ClusterPredictorTests.Feed(cluster, i, t, t + 0.5);
            }

            cluster.Evaluate(t + 0.5);

            // Session 0's own latency climbs 5 ms/s from t=20.
            sessions.ObserveLatency(0, t, t < 20 ? 0.03 : 0.03 + (0.005 * (t - 20)));
            sessions.ObserveLatency(1, t, 0.03);
            sessions.Evaluate(t + 0.5, cluster);
        }

        Assert.True(sessions.GetScore(0).Score < 0.5, $"{sessions.GetScore(0).Score}");
        Assert.True(sessions.GetScore(1).Score > 0.9);
        var output = new MigrationRecommendation[8];
        var count = new MigrationPlanner().Plan(60, cluster, sessions, output);
        Assert.Equal(1, count);
        Assert.Equal(MigrationReason.SessionDegrading, output[0].Reason);
    }

    [Fact]
    public void SessionTable_RejectsBadInputAndReusesSlots()
    {
        var sessions = new SessionTable(2);
        var a = sessions.Add(0);
        var b = sessions.Add(1);
        Assert.Equal(-1, sessions.Add(2));
        Assert.Equal(SampleResult.RejectedNotFinite, sessions.ObserveLatency(a, 1, double.NaN));
        Assert.Equal(SampleResult.RejectedNegative, sessions.ObserveBytes(a, 1, -1));
        Assert.Equal(SampleResult.RejectedUnknownEndpoint, sessions.ObserveLatency(7, 1, 0.1));
        Assert.True(sessions.Remove(b));
        Assert.False(sessions.Remove(b));
        Assert.Equal(b, sessions.Add(3));
        Assert.Equal(3, sessions.GetEndpoint(b));
    }

    [Fact]
    public void EmptyInputs_PlanNothing()
    {
        var planner = new MigrationPlanner();
        var output = new MigrationRecommendation[4];
        Assert.Equal(0, planner.Plan(1, new ClusterPredictor(), new SessionTable(1), output));
        Assert.Equal(0, planner.Plan(double.NaN, new ClusterPredictor(), new SessionTable(1), output));
    }
}
