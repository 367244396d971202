using Relay.Predict.Planning;
using Relay.Predict.Stability;

namespace Relay.Predict.Tests.Stability;

/// <summary>The scoring loop's hot paths allocate nothing once set up (the benchmarks measure
/// the same with BenchmarkDotNet; this keeps it from regressing between benchmark runs).</summary>
public class AllocationTests
{
    [Fact]
    public void ObserveEvaluateAndPlan_AllocateNothingAfterWarmUp()
    {
        var cluster = new ClusterPredictor();
        var sessions = new SessionTable(200);
        for (var e = 0; e < 10; e++)
        {
            cluster.AddEndpoint(e % 3);
        }

        for (var s = 0; s < 200; s++)
        {
            sessions.Add(s % 10, 1 + (s % 3));
        }

        var planner = new MigrationPlanner();
        var output = new MigrationRecommendation[64];
        var t = 0.0;
        void Step()
        {
            for (var k = 0; k < 10; k++)
            {
                t += 0.1;
                for (var e = 0; e < 10; e++)
                {
                    // Endpoint 0 dies at t = 40: evacuation and planning run too.
                    if (e != 0 || t < 40)
                    {
                        cluster.ObserveHeartbeat(e, t);
                    }

                    cluster.ObserveRequest(e, t, 0.02, false);
                }

                cluster.EvaluateLiveness(t);
            }

            for (var e = 0; e < 10; e++)
            {
                cluster.ObserveLoad(e, t, 40);
                cluster.ObserveHost(e, t, 0.3, 0.4);
            }

            for (var s = 0; s < 200; s++)
            {
                sessions.ObserveLatency(s, t, 0.02);
                sessions.ObserveBytes(s, t, 1000);
            }

            cluster.Evaluate(t);
            sessions.Evaluate(t, cluster);
            planner.Plan(t, cluster, sessions, output);
        }

        for (var i = 0; i < 30; i++)
        {
            Step();
        }

        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 30; i++)
        {
            Step();
        }

        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(EndpointDecision.Evacuate, cluster.GetDecision(0));
        Assert.Equal(0, allocated);
    }
}
