using Relay.Transport.Paths;

namespace Relay.Transport.Tests.Paths;

public class RedundancyPolicyTests
{
    [Fact]
    public void FivePercentLoss_MeetsTargetWithAtMost40PercentParity()
    {
        // k >= 8: with fewer data shards no m reaches 1e-3 within 40% (k = 4 needs m = 3).
        foreach (var k in new[] { 8, 10, 16 })
        {
            var m = RedundancyPolicy.ChooseParity(k, 0.05, 1e-3, 1, 16, 1);
            Assert.True(RedundancyPolicy.FailureProbability(k, m, 0.05) <= 1e-3);
            Assert.True(m <= 0.4 * (k + m), $"k={k} m={m}");
            Assert.True(m == 1 || RedundancyPolicy.FailureProbability(k, m - 1, 0.05) > 1e-3, "m is not minimal");
        }
    }

    [Fact]
    public void ParityFollowsLoss_WithinFloorAndCap()
    {
        Assert.Equal(2, RedundancyPolicy.ChooseParity(10, 0.0, 1e-3, 2, 8, 1));
        Assert.Equal(8, RedundancyPolicy.ChooseParity(10, 0.5, 1e-3, 2, 8, 1));
        var low = RedundancyPolicy.ChooseParity(10, 0.01, 1e-3, 1, 20, 1);
        var high = RedundancyPolicy.ChooseParity(10, 0.2, 1e-3, 1, 20, 1);
        Assert.True(high > low);
    }

    [Fact]
    public void ThreePaths_ParityCoversOneWholePath()
    {
        var m = RedundancyPolicy.ChooseParity(8, 0.01, 1e-3, 1, 8, 3);
        Assert.True(m >= (8 + m + 2) / 3);
    }

    [Fact]
    public void MonteCarlo_ResidualBlockLossAtFivePercent_IsBelowTarget()
    {
        var random = new Random(42);
        const int K = 10;
        var m = RedundancyPolicy.ChooseParity(K, 0.05, 1e-3, 1, 16, 1);
        var failures = 0;
        const int Blocks = 200_000;
        for (var b = 0; b < Blocks; b++)
        {
            var lost = 0;
            for (var s = 0; s < K + m; s++)
            {
                if (random.NextDouble() < 0.05)
                {
                    lost++;
                }
            }

            if (lost > m)
            {
                failures++;
            }
        }

        // 1e-3 target; allow sampling noise (expected <= 200 of 200,000).
        Assert.True(failures <= 260, $"{failures} of {Blocks} blocks failed with m={m}");
    }
}
