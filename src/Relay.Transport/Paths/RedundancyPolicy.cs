namespace Relay.Transport.Paths;

/// <summary>
/// Picks the parity count m for a block of k data shards: the smallest m for which more than m
/// losses among k + m independent shards has probability at most the target, clamped to [floor, cap],
/// and raised so one dead path of <c>livePaths</c> costs at most m shards where the cap allows.
/// </summary>
internal static class RedundancyPolicy
{
    public static int ChooseParity(int k, double loss, double targetFailure, int minParity, int maxParity, int livePaths)
    {
        loss = Math.Clamp(loss, 0, 0.95);
        var m = minParity;
        while (m < maxParity && FailureProbability(k, m, loss) > targetFailure)
        {
            m++;
        }

        if (livePaths > 1)
        {
            while (m < maxParity && m < (k + m + livePaths - 1) / livePaths)
            {
                m++;
            }
        }

        return Math.Min(m, 255 - k);
    }

    /// <summary>P(more than m of n = k + m shards lost) under independent loss probability p.</summary>
    public static double FailureProbability(int k, int m, double p)
    {
        var n = k + m;
        if (p <= 0)
        {
            return 0;
        }

        // Sum the binomial pmf for i = 0..m (successful decodes) and return the complement, computed
        // with logs so large n stays finite.
        double success = 0;
        for (var i = 0; i <= m; i++)
        {
            success += Math.Exp(LogChoose(n, i) + (i * Math.Log(p)) + ((n - i) * Math.Log(1 - p)));
        }

        return Math.Max(0, 1 - success);
    }

    private static double LogChoose(int n, int r)
    {
        double result = 0;
        for (var i = 1; i <= r; i++)
        {
            result += Math.Log(n - r + i) - Math.Log(i);
        }

        return result;
    }
}
