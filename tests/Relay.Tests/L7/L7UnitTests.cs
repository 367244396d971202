using System.Collections.Immutable;
using System.Text;
using Microsoft.Extensions.Primitives;
using Relay.Clusters;
using Relay.Configuration;
using Relay.L7;
using Relay.L7.Mirroring;

namespace Relay.Tests.L7;

public class RetryBudgetTests
{
    [Fact]
    public void Budget_StartsAtMinBudget_AndRefillsByTheShareOfRequests()
    {
        var budget = new RetryBudget(new RetryConfig { MinBudget = 2, BudgetPercent = 25 });
        Assert.True(budget.TryWithdraw());
        Assert.True(budget.TryWithdraw());
        Assert.False(budget.TryWithdraw());
        for (var i = 0; i < 3; i++)
        {
            budget.OnRequest();
        }

        Assert.False(budget.TryWithdraw());
        budget.OnRequest();
        Assert.True(budget.TryWithdraw());
        Assert.False(budget.TryWithdraw());
    }

    [Fact]
    public void Budget_IsCapped_SoAQuietPeriodCannotBankARetryStorm()
    {
        var budget = new RetryBudget(new RetryConfig { MinBudget = 0, BudgetPercent = 100 });
        for (var i = 0; i < 10_000; i++)
        {
            budget.OnRequest();
        }

        var granted = 0;
        while (budget.TryWithdraw())
        {
            granted++;
        }

        Assert.Equal(10, granted);
    }

    [Fact]
    public void Backoff_Doubles_WithJitter_UpToTheCap()
    {
        var config = new RetryConfig { Backoff = TimeSpan.FromMilliseconds(10), MaxBackoff = TimeSpan.FromMilliseconds(30) };
        for (var i = 0; i < 50; i++)
        {
            Assert.InRange(RetryBudget.Delay(config, 1).TotalMilliseconds, 5, 10);
            Assert.InRange(RetryBudget.Delay(config, 2).TotalMilliseconds, 10, 20);
            Assert.InRange(RetryBudget.Delay(config, 5).TotalMilliseconds, 15, 30);
        }
    }
}

public class ConsistencyWindowTests
{
    [Fact]
    public void Window_IsUnknownUntilMinSamples_ThenFollowsTheMismatchShare()
    {
        var window = new ConsistencyWindow(new CompareConfig { Window = 4, MinSamples = 3, MaxMismatchPercent = 25 });
        Assert.False(window.Add(true));
        Assert.False(window.Add(true));
        Assert.Equal(ShadowConsistency.Unknown, window.State);
        Assert.True(window.Add(true));
        Assert.Equal(ShadowConsistency.Consistent, window.State);
        Assert.False(window.Add(false));
        Assert.Equal(ShadowConsistency.Consistent, window.State);
        Assert.True(window.Add(false));
        Assert.Equal(ShadowConsistency.Inconsistent, window.State);
        Assert.Equal(2, window.Mismatches);
        Assert.False(window.Add(true));
        Assert.False(window.Add(true));
        Assert.True(window.Add(true));
        Assert.Equal(ShadowConsistency.Consistent, window.State);
        Assert.Equal(4, window.Samples);
    }
}

public class ResponseDigestTests
{
    [Fact]
    public void JsonFieldsToIgnore_AreRemovedAtAnyDepth()
    {
        ImmutableArray<string> ignore = ["ts", "host"];
        var a = Encoding.UTF8.GetBytes("""{"id":1,"ts":"10:00","items":[{"v":1,"host":"a"}]}""");
        var b = Encoding.UTF8.GetBytes("""{"id":1,"ts":"10:01","items":[{"v":1,"host":"b"}]}""");
        var c = Encoding.UTF8.GetBytes("""{"id":2,"ts":"10:01","items":[{"v":1,"host":"b"}]}""");
        Assert.Equal(ResponseDigest.DigestBody(a, "application/json", ignore), ResponseDigest.DigestBody(b, "application/json; charset=utf-8", ignore));
        Assert.NotEqual(ResponseDigest.DigestBody(a, "application/json", ignore), ResponseDigest.DigestBody(c, "application/json", ignore));
        Assert.NotEqual(ResponseDigest.DigestBody(a, "text/plain", ignore), ResponseDigest.DigestBody(b, "text/plain", ignore));
        Assert.Equal(ResponseDigest.DigestBody("not json"u8, "application/json", ignore), ResponseDigest.DigestBody("not json"u8, "text/plain", []));
    }

    [Fact]
    public void Headers_CompareWithoutOrderCaseOrIgnoredNames()
    {
        KeyValuePair<string, StringValues>[] a = [new("Content-Type", "text/plain"), new("X-A", "1"), new("Date", "Mon")];
        KeyValuePair<string, StringValues>[] b = [new("x-a", "1"), new("content-type", "text/plain"), new("Date", "Tue")];
        KeyValuePair<string, StringValues>[] c = [new("x-a", "2"), new("content-type", "text/plain")];
        Assert.Equal(ResponseDigest.DigestHeaders(a, ["Date"]), ResponseDigest.DigestHeaders(b, ["date"]));
        Assert.NotEqual(ResponseDigest.DigestHeaders(a, ["Date"]), ResponseDigest.DigestHeaders(c, ["Date"]));
        Assert.Equal("status", new ResponseDigest(200, 1, 1).Difference(new ResponseDigest(500, 1, 1)));
        Assert.Equal("body", new ResponseDigest(200, 1, 1).Difference(new ResponseDigest(200, 1, 2)));
        Assert.Null(new ResponseDigest(200, 1, 1).Difference(new ResponseDigest(200, 1, 1)));
    }

    [Fact]
    public void BodyCapture_PastTheCap_HashesEveryByte_WithoutHoldingThem()
    {
        using var small = new BodyCapture(8);
        small.Append("0123"u8);
        small.Append("4567"u8);
        Assert.True(small.Complete);
        using var big = new BodyCapture(8);
        big.Append("0123"u8);
        big.Append("45678"u8);
        Assert.False(big.Complete);
        Assert.True(big.Held.IsEmpty);
        using var other = new BodyCapture(8);
        other.Append("012345679"u8);
        Assert.NotEqual(big.Digest(null, []), other.Digest(null, []));
        using var same = new BodyCapture(4);
        same.Append("012345678"u8);
        Assert.Equal(big.Digest(null, []), same.Digest(null, []));
    }
}

public class AffinityTableTests
{
    [Fact]
    public void Table_IsBounded_AndForgetsIdleSessions()
    {
        var time = new ManualTime();
        var endpoint = new EndpointState("c", new EndpointConfig { Id = "e1", Address = new System.Net.DnsEndPoint("127.0.0.1", 1) });
        var table = new AffinityTable(new AffinityConfig { Name = "sid", MaxSessions = 2, IdleTimeout = TimeSpan.FromSeconds(10) });
        Assert.NotNull(table.TryAdd("a", endpoint, time.GetUtcNow(), time.GetTimestamp()));
        Assert.NotNull(table.TryAdd("b", endpoint, time.GetUtcNow(), time.GetTimestamp()));
        Assert.Null(table.TryAdd("c", endpoint, time.GetUtcNow(), time.GetTimestamp()));
        Assert.Equal(2, table.Count);
        time.Advance(TimeSpan.FromSeconds(5));
        Assert.True(table.TryGet("a", out var a));
        a.Touch(time.GetTimestamp());
        time.Advance(TimeSpan.FromSeconds(6));
        Assert.Equal(1, table.Sweep(time, time.GetTimestamp()));
        Assert.True(table.TryGet("a", out _));
        Assert.False(table.TryGet("b", out _));
        Assert.NotNull(table.TryAdd("c", endpoint, time.GetUtcNow(), time.GetTimestamp()));
    }

    [Fact]
    public void Keys_AreNewEachTime_AndOddKeysAreRefused()
    {
        Assert.NotEqual(AffinityTable.NewKey(), AffinityTable.NewKey());
        Assert.True(AffinityTable.IsAcceptableKey(AffinityTable.NewKey()));
        Assert.False(AffinityTable.IsAcceptableKey(""));
        Assert.False(AffinityTable.IsAcceptableKey(new string('a', 200)));
        Assert.False(AffinityTable.IsAcceptableKey("a b"));
        Assert.False(AffinityTable.IsAcceptableKey("a;b"));
    }
}

/// <summary>A clock that moves only when told (kept here so the tests need no extra package).</summary>
internal sealed class ManualTime : TimeProvider
{
    private long _ticks = 1_000_000;

    public override long TimestampFrequency => TimeSpan.TicksPerSecond;

    public override long GetTimestamp() => _ticks;

    public override DateTimeOffset GetUtcNow() => new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero).AddTicks(_ticks);

    public void Advance(TimeSpan by) => _ticks += by.Ticks;
}
