using Microsoft.Extensions.Time.Testing;
using Relay.Predict.Stability;

namespace Relay.Predict.Tests.Stability;

public class PredictClockTests
{
    [Fact]
    public void FakeTime_DrivesDetectionWithoutWallClock()
    {
        var time = new FakeTimeProvider();
        var clock = new PredictClock(time);
        var p = new ClusterPredictor();
        var e = p.AddEndpoint();
        for (var i = 0; i < 100; i++)
        {
            p.ObserveHeartbeat(e, clock.NowSeconds);
            time.Advance(TimeSpan.FromMilliseconds(200));
            p.EvaluateLiveness(clock.NowSeconds);
        }

        Assert.Equal(EndpointDecision.Serve, p.GetDecision(e));
        var silentFrom = clock.NowSeconds;
        while (p.GetDecision(e) != EndpointDecision.Evacuate && clock.NowSeconds - silentFrom < 5)
        {
            time.Advance(TimeSpan.FromMilliseconds(100));
            p.EvaluateLiveness(clock.NowSeconds);
        }

        Assert.InRange(clock.NowSeconds - silentFrom, 0.5, 1.2);
        Assert.Equal(clock.NowSeconds, clock.ToSeconds(time.GetTimestamp()), 9);
    }
}
