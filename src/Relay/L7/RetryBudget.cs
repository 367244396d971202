using Relay.Configuration;

namespace Relay.L7;

/// <summary>
/// A token bucket for retries, as Finagle's RetryBudget: every request deposits
/// <see cref="RetryConfig.BudgetPercent"/>/100 of a token, every retry withdraws one, and the
/// bucket starts with (and never holds much more than) <see cref="RetryConfig.MinBudget"/> plus ten.
/// A dead cluster therefore costs at most that share of extra load, never a retry storm.
/// </summary>
internal sealed class RetryBudget
{
    private const long Unit = 1000;
    private readonly long _deposit;
    private readonly long _capacity;
    private long _milliTokens;

    public RetryBudget(RetryConfig config)
    {
        _deposit = (long)Math.Round(config.BudgetPercent * Unit / 100);
        _capacity = (config.MinBudget + 10) * Unit;
        _milliTokens = config.MinBudget * Unit;
    }

    public double Tokens => Volatile.Read(ref _milliTokens) / (double)Unit;

    public void OnRequest()
    {
        if (_deposit == 0 || Volatile.Read(ref _milliTokens) >= _capacity)
        {
            return;
        }

        Interlocked.Add(ref _milliTokens, _deposit);
    }

    public bool TryWithdraw()
    {
        while (true)
        {
            var current = Volatile.Read(ref _milliTokens);
            if (current < Unit)
            {
                return false;
            }

            if (Interlocked.CompareExchange(ref _milliTokens, current - Unit, current) == current)
            {
                return true;
            }
        }
    }

    /// <summary>Exponential back-off with equal jitter: half the step fixed, half random.</summary>
    public static TimeSpan Delay(RetryConfig config, int retry)
    {
        var step = config.Backoff.TotalMilliseconds * Math.Pow(2, Math.Max(0, retry - 1));
        step = Math.Min(step, config.MaxBackoff.TotalMilliseconds);
        return TimeSpan.FromMilliseconds((step / 2) + (Random.Shared.NextDouble() * step / 2));
    }
}
