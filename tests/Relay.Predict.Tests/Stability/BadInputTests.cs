using Relay.Predict.Stability;

namespace Relay.Predict.Tests.Stability;

public class BadInputTests
{
    [Fact]
    public void NaNAndInfinity_AreRejectedAndCounted()
    {
        var p = new ClusterPredictor();
        var e = p.AddEndpoint();
        Assert.Equal(SampleResult.RejectedNotFinite, p.ObserveRequest(e, 1, double.NaN, false));
        Assert.Equal(SampleResult.RejectedNotFinite, p.ObserveRequest(e, double.NaN, 0.01, false));
        Assert.Equal(SampleResult.RejectedNotFinite, p.ObserveHeartbeat(e, double.PositiveInfinity));
        Assert.Equal(SampleResult.RejectedNotFinite, p.ObserveLoad(e, 1, double.NaN));
        Assert.Equal(SampleResult.RejectedNotFinite, p.ObserveHost(e, 1, double.NaN, 0.5));
        Assert.Equal(SampleResult.RejectedNotFinite, p.ObserveInterruptionNotice(e, 1, double.PositiveInfinity));
        Assert.Equal(6, p.RejectedSamples);
        var summary = p.Evaluate(2);
        Assert.Equal(ScoreStatus.Ok, summary.Status);
        Assert.Equal(ScoreStatus.NoHistory, p.GetScore(e).Status);
        Assert.Equal(ScoreStatus.InvalidTime, InvalidTime(p));
    }

    private static ScoreStatus InvalidTime(ClusterPredictor p) => p.Evaluate(double.NaN).Status;

    [Fact]
    public void NegativeValues_AreRejected()
    {
        var p = new ClusterPredictor();
        var e = p.AddEndpoint();
        Assert.Equal(SampleResult.RejectedNegative, p.ObserveRequest(e, 1, -0.01, false));
        Assert.Equal(SampleResult.RejectedNegative, p.ObserveLoad(e, 1, -5));
        Assert.Equal(SampleResult.RejectedNegative, p.ObserveHost(e, 1, -0.1, 0.5));
        Assert.Equal(3, p.RejectedSamples);
    }

    [Fact]
    public void OutOfOrderSamples_AreRejectedWithoutCorruptingState()
    {
        var p = new ClusterPredictor();
        var e = p.AddEndpoint();
        ClusterPredictorTests.Feed(p, e, 0, 30);
        p.Evaluate(30);
        var before = p.GetScore(e).Score;
        Assert.Equal(SampleResult.RejectedOutOfOrder, p.ObserveHeartbeat(e, 5));
        Assert.Equal(SampleResult.RejectedOutOfOrder, p.ObserveRequest(e, 5, 10.0, true));
        Assert.Equal(SampleResult.RejectedOutOfOrder, p.ObserveLoad(e, 5, 1000));
        p.Evaluate(30.1);
        Assert.Equal(before, p.GetScore(e).Score, 3);
        Assert.Equal(EndpointDecision.Serve, p.GetDecision(e));
    }

    [Fact]
    public void UnknownEndpoint_IsRejected()
    {
        var p = new ClusterPredictor();
        Assert.Equal(SampleResult.RejectedUnknownEndpoint, p.ObserveHeartbeat(0, 1));
        Assert.Equal(SampleResult.RejectedUnknownEndpoint, p.ObserveRequest(-1, 1, 0.1, false));
        Assert.Equal(SampleResult.RejectedUnknownEndpoint, p.ObserveLoad(7, 1, 1));
    }

    [Fact]
    public void EmptyCluster_EvaluatesToNothing()
    {
        var p = new ClusterPredictor();
        var summary = p.Evaluate(1);
        Assert.Equal(new EvaluationSummary(ScoreStatus.Ok, 0, 0, 0, 0, 0), summary);
    }

    [Fact]
    public void EndpointWithNoHistory_GetsPriorScoreAndServes()
    {
        var p = new ClusterPredictor(new PredictorOptions { NoHistoryScore = 0.9 });
        var fresh = p.AddEndpoint();
        var e = p.AddEndpoint();
        ClusterPredictorTests.Feed(p, e, 0, 10);
        p.Evaluate(10);
        Assert.Equal(ScoreStatus.NoHistory, p.GetScore(fresh).Status);
        Assert.Equal(0.9, p.GetScore(fresh).Score);
        Assert.Equal(EndpointDecision.Serve, p.GetDecision(fresh));
    }

    [Fact]
    public void ClockJumpForward_HoldsDecisionsAndRebasesLiveness()
    {
        var p = new ClusterPredictor();
        var a = p.AddEndpoint();
        var b = p.AddEndpoint();
        ClusterPredictorTests.Feed(p, a, 0, 30);
        ClusterPredictorTests.Feed(p, b, 0, 30);
        p.Evaluate(30);

        // The host slept (or NTP stepped) for an hour: nothing was heard, and that is not a crash.
        var jump = p.Evaluate(3630);
        Assert.Equal(ScoreStatus.ClockJump, jump.Status);
        Assert.Equal(0, jump.Evacuating);
        var after = jump;
        for (var t = 3630.0; t < 3640; t += 0.5)
        {
            ClusterPredictorTests.Feed(p, a, t, t + 0.5);
            ClusterPredictorTests.Feed(p, b, t, t + 0.5);
            after = p.Evaluate(t + 0.5);
            Assert.Equal(0, after.Evacuating);
        }

        Assert.Equal(ScoreStatus.Ok, after.Status);
        Assert.Equal(0, after.Evacuating);
        Assert.True(p.GetScore(a).Score > 0.9, p.GetScore(a).ToString());
    }

    [Fact]
    public void ClockGoingBackwards_ChangesNothing()
    {
        var p = new ClusterPredictor();
        var e = p.AddEndpoint();
        ClusterPredictorTests.Feed(p, e, 0, 30);
        p.Evaluate(30);
        var before = p.GetScore(e);
        var summary = p.Evaluate(10);
        Assert.Equal(ScoreStatus.ClockWentBackwards, summary.Status);
        Assert.Equal(before.Score, p.GetScore(e).Score);
    }

    [Fact]
    public void GarbageStream_NeverThrowsAndScoresStayInRange()
    {
        var rng = new Random(1234);
        var p = new ClusterPredictor();
        for (var i = 0; i < 5; i++)
        {
            p.AddEndpoint(i);
        }

        double[] specials = [double.NaN, double.PositiveInfinity, double.NegativeInfinity, -1, 0, 1e308, -1e308, double.Epsilon];
        for (var k = 0; k < 20000; k++)
        {
            double Pick() => rng.Next(4) == 0 ? specials[rng.Next(specials.Length)] : rng.NextDouble() * 100;
            var endpoint = rng.Next(-1, 7);
            switch (rng.Next(6))
            {
                case 0: p.ObserveHeartbeat(endpoint, Pick()); break;
                case 1: p.ObserveRequest(endpoint, Pick(), Pick(), rng.Next(2) == 0); break;
                case 2: p.ObserveLoad(endpoint, Pick(), Pick()); break;
                case 3: p.ObserveHost(endpoint, Pick(), Pick(), Pick()); break;
                case 4: p.ObserveInterruptionNotice(endpoint, Pick(), Pick()); break;
                default: p.Evaluate(Pick()); break;
            }
        }

        p.Evaluate(1e9);
        for (var i = 0; i < 5; i++)
        {
            var s = p.GetScore(i);
            Assert.InRange(s.Score, 0.0, 1.0);
            Assert.False(double.IsNaN(s.Score));
        }
    }
}
