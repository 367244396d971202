using Relay.Predict.Planning;

namespace Relay.Predict.Tests.Planning;

public class ScalingAdvisorTests
{
    private static readonly ScalingOptions _options = new()
    {
        StepSeconds = 60,
        SeasonLength = 60,          // one "day" of 60 minutes keeps the test short
        LeadTimeSeconds = 300,
        CapacityPerEndpoint = 100,
        TargetUtilisation = 0.7,
        ScaleInStabilisationSeconds = 600,
    };

    /// <summary>Seasonal demand: 200-800 concurrent sessions, peak at minute 30 of each season.</summary>
    private static double Demand(double minute, Random rng)
        => 500 - (300 * Math.Cos(2 * Math.PI * minute / 60)) + ((rng.NextDouble() - 0.5) * 20);

    [Fact]
    public void SeasonalRamp_ScalesOutBeforeDemandArrives()
    {
        var rng = new Random(21);
        var advisor = new ScalingAdvisor(_options);
        var current = 12;
        var earlyBy = new List<double>();
        for (var minute = 0; minute < 60 * 8; minute++)
        {
            var demand = Demand(minute, rng);
            for (var s = 0; s < 60; s += 10)
            {
                advisor.Observe((minute * 60) + s, demand / 10, demand);
            }

            var rec = advisor.Recommend(current);
            if (minute >= 60 * 4 && rec.Direction == ScalingDirection.ScaleOut)
            {
                // How long until observed demand alone would have needed this many endpoints?
                var needed = rec.Desired * 70;
                for (var ahead = 0; ahead <= 30; ahead++)
                {
                    if (500 - (300 * Math.Cos(2 * Math.PI * (minute + ahead) / 60)) >= needed - 70)
                    {
                        earlyBy.Add(ahead);
                        break;
                    }
                }
            }

            if (rec.Direction != ScalingDirection.Hold)
            {
                current = rec.Desired;
            }
        }

        Assert.NotEmpty(earlyBy);
        Assert.True(earlyBy.Average() >= 2, $"scale-out on average {earlyBy.Average():F1} min ahead");
    }

    [Fact]
    public void ScaleIn_NeverOnForecastAloneAndOnlyAfterStabilisation()
    {
        var rng = new Random(5);
        var advisor = new ScalingAdvisor(_options);
        for (var minute = 0; minute < 60 * 3; minute++)
        {
            var demand = 300 + ((rng.NextDouble() - 0.5) * 10);
            advisor.Observe(minute * 60, 30, demand);
        }

        // 300 sessions need 5 endpoints at 70%; with 10 running, scale-in is allowed.
        var rec = advisor.Recommend(10);
        Assert.Equal(ScalingDirection.ScaleIn, rec.Direction);
        Assert.Equal(ScalingBasis.Stabilised, rec.Basis);
        Assert.InRange(rec.Desired, 5, 6);

        // Observed load jumps: even if the forecast still says 300, no scale-in.
        advisor.Observe((60 * 3 * 60) + 1, 30, 650);
        var after = advisor.Recommend(10);
        Assert.NotEqual(ScalingDirection.ScaleIn, after.Direction);
    }

    [Fact]
    public void ScaleIn_WaitsForTheWindowAfterALoadDrop()
    {
        var advisor = new ScalingAdvisor(_options);
        var minute = 0;
        for (; minute < 120; minute++)
        {
            advisor.Observe(minute * 60, 60, 600);
        }

        // Load drops to 100 (needs 2): for the next 10 minutes the window still remembers 600.
        var scaledInAt = -1;
        for (; minute < 150 && scaledInAt < 0; minute++)
        {
            advisor.Observe(minute * 60, 10, 100);
            if (advisor.Recommend(9).Direction == ScalingDirection.ScaleIn)
            {
                scaledInAt = minute;
            }
        }

        Assert.True(scaledInAt >= 120 + 10, $"scaled in at minute {scaledInAt}");
    }

    [Fact]
    public void NoHistory_DecidesOnObservedLoadOnly()
    {
        var advisor = new ScalingAdvisor(_options);
        advisor.Observe(0, 10, 350);
        var rec = advisor.Recommend(2);
        Assert.Equal(ScalingDirection.ScaleOut, rec.Direction);
        Assert.Equal(ScalingBasis.ObservedOnly, rec.Basis);
        Assert.Equal(5, rec.Desired);
        Assert.False(advisor.Observe(double.NaN, 1, 1));
        Assert.False(advisor.Observe(1, -1, 1));
    }
}
