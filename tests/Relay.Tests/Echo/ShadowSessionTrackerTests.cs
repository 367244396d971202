using Microsoft.Extensions.Time.Testing;
using Relay.Echo;

namespace Relay.Tests.Echo;

public class ShadowSessionTrackerTests
{
    private static readonly ShadowPolicy Policy = new(MaxLagBytes: 1000, MaxOutputLag: 10, AckTimeout: TimeSpan.FromSeconds(2));

    [Fact]
    public void ANewShadow_IsSyncing_UntilItsFirstAck_ThenReady()
    {
        var time = new FakeTimeProvider();
        var tracker = new ShadowSessionTracker(Policy, time);
        Assert.Equal(ShadowState.Syncing, tracker.State);
        Assert.False(tracker.OnLogAdvanced(500, 3));
        Assert.Equal(ShadowState.Syncing, tracker.State);

        Assert.True(tracker.OnAck(500, 3, DigestStatus.Match));
        Assert.Equal(ShadowState.Ready, tracker.State);
        Assert.Equal(new ShadowStateChange(ShadowState.Syncing, ShadowState.Ready, tracker.Reason, time.GetUtcNow()), tracker.LastChange);
    }

    [Fact]
    public void LagOverTheBound_InInputBytesOrOutput_IsSyncing()
    {
        var tracker = new ShadowSessionTracker(Policy, new FakeTimeProvider());
        tracker.OnAck(0, 0, DigestStatus.Match);
        Assert.Equal(ShadowState.Ready, tracker.State);

        Assert.True(tracker.OnLogAdvanced(1001, 1));
        Assert.Equal(ShadowState.Syncing, tracker.State);
        Assert.Equal(1001, tracker.LagBytes);
        Assert.Contains("1001 bytes", tracker.Reason, StringComparison.Ordinal);

        Assert.True(tracker.OnAck(900, 1, DigestStatus.Match));
        Assert.Equal(ShadowState.Ready, tracker.State);

        // All input applied, but the shadow's output is 11 behind what the primary delivered (a shadow
        // replaying history): a takeover would wait for it inside the blackout, so it is not Ready.
        Assert.True(tracker.OnLogAdvanced(1000, 12));
        Assert.Equal(ShadowState.Syncing, tracker.State);
        Assert.Equal(ShadowReason.OutputLag, tracker.ReasonKind);
        Assert.Contains("its output is 11 behind the primary's delivered 12", tracker.Reason, StringComparison.Ordinal);

        Assert.True(tracker.OnAck(1000, 12, DigestStatus.Pending));
        Assert.Equal(ShadowState.Ready, tracker.State);
    }

    [Fact]
    public void PendingDigests_StillAllowReady_ButADivergedDigestIsForever()
    {
        var tracker = new ShadowSessionTracker(Policy, new FakeTimeProvider());
        tracker.OnAck(0, 0, DigestStatus.Pending);
        Assert.Equal(ShadowState.Ready, tracker.State);

        Assert.True(tracker.OnAck(0, 0, DigestStatus.Diverged, divergedIndex: 41));
        Assert.Equal(ShadowState.Diverged, tracker.State);
        Assert.Contains("response 41", tracker.Reason, StringComparison.Ordinal);

        Assert.False(tracker.OnAck(0, 0, DigestStatus.Match));
        Assert.Equal(ShadowState.Diverged, tracker.State);
        Assert.Equal(41, tracker.DivergedIndex);
    }

    [Fact]
    public void NoAckForTheTimeout_IsLost_AndAcksBringItBack()
    {
        var time = new FakeTimeProvider();
        var tracker = new ShadowSessionTracker(Policy, time);
        tracker.OnAck(0, 0, DigestStatus.Match);
        time.Advance(TimeSpan.FromMilliseconds(1999));
        Assert.False(tracker.Evaluate());
        Assert.Equal(ShadowState.Ready, tracker.State);

        time.Advance(TimeSpan.FromMilliseconds(2));
        Assert.True(tracker.Evaluate());
        Assert.Equal(ShadowState.Lost, tracker.State);
        Assert.Contains("no ack for 2001 ms", tracker.Reason, StringComparison.Ordinal);

        Assert.True(tracker.OnAck(0, 0, DigestStatus.Match));
        Assert.Equal(ShadowState.Ready, tracker.State);
    }

    [Fact]
    public void AShadowThatNeverAcks_IsLost()
    {
        var time = new FakeTimeProvider();
        var tracker = new ShadowSessionTracker(Policy, time);
        time.Advance(TimeSpan.FromSeconds(3));
        Assert.True(tracker.Evaluate());
        Assert.Equal(ShadowState.Lost, tracker.State);
        Assert.Contains("since the shadow was added", tracker.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void EvictionFromTheLog_IsLostForGood()
    {
        var tracker = new ShadowSessionTracker(Policy, new FakeTimeProvider());
        tracker.OnAck(0, 0, DigestStatus.Match);
        Assert.True(tracker.OnEvicted("the log was trimmed past this shadow's ack"));
        Assert.Equal(ShadowState.Lost, tracker.State);
        Assert.False(tracker.OnAck(0, 0, DigestStatus.Match));
        Assert.Equal(ShadowState.Lost, tracker.State);
    }

    [Fact]
    public void StaleAcks_DoNotMoveTheShadowBack()
    {
        var tracker = new ShadowSessionTracker(Policy, new FakeTimeProvider());
        tracker.OnLogAdvanced(5000, 0);
        tracker.OnAck(4500, 0, DigestStatus.Match);
        tracker.OnAck(100, 0, DigestStatus.Match);
        Assert.Equal(4500, tracker.AckedBytes);
        Assert.Equal(ShadowState.Ready, tracker.State);
    }

    [Fact]
    public void Evaluate_WithoutAChange_AllocatesNothing()
    {
        var time = new FakeTimeProvider();
        var tracker = new ShadowSessionTracker(Policy, time);
        tracker.OnAck(0, 0, DigestStatus.Match);
        tracker.OnLogAdvanced(5000, 0); // Syncing by lag: the reason has numbers in it
        Assert.Equal(ShadowState.Syncing, tracker.State);
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 1000; i++)
        {
            tracker.OnLogAdvanced(5000 + i, 0);
            tracker.OnAck(i, 0, DigestStatus.Pending);
            tracker.Evaluate();
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        Assert.Equal(ShadowReason.LagBytes, tracker.ReasonKind);
        Assert.Equal("behind the log by 5000 bytes (bound 1000)", tracker.Reason);
    }

    [Fact]
    public void AnInvalidPolicy_IsRefused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new ShadowSessionTracker(Policy with { AckTimeout = TimeSpan.Zero }, TimeProvider.System));
        Assert.Throws<ArgumentOutOfRangeException>(() => new ShadowSessionTracker(Policy with { MaxLagBytes = -1 }, TimeProvider.System));
    }

    [Fact]
    public void EndToEnd_ALogAndAComparer_DriveTheTracker()
    {
        var time = new FakeTimeProvider();
        using var log = new EchoLog(new EchoLogOptions(RetentionCapBytes: 4096, SegmentBytes: 1024));
        Assert.True(log.TryAddShadow(out var id, out _));
        var tracker = new ShadowSessionTracker(new ShadowPolicy(2048, 0, TimeSpan.FromSeconds(1)), time);
        var primaryDigests = new DigestLog(256);
        var primaryOut = new MessageStream(MessageFramer.Create(CodecOptions.For(MessageCodec.Lines), StreamDirection.Response), primaryDigests);
        var comparer = new DigestComparer(256);
        var shadowOut = new MessageStream(MessageFramer.Create(CodecOptions.For(MessageCodec.Lines), StreamDirection.Response), comparer.Shadow);

        for (var i = 0; i < 40; i++)
        {
            var line = System.Text.Encoding.ASCII.GetBytes($"request {i}\n");
            Assert.True(log.Append(line));
            tracker.OnLogAdvanced(log.Length, 0);
            var reply = System.Text.Encoding.ASCII.GetBytes($"reply {i}\n");
            Assert.True(primaryOut.Feed(reply));
            Assert.True(shadowOut.Feed(i == 30 ? "reply X\n"u8 : reply)); // the shadow's backend answers one differently
            Assert.True(primaryDigests.TryGet(i, out var d));
            comparer.AddPrimary(d);
            log.Ack(id, log.Length);
            tracker.OnAck(log.Acked(id), 0, comparer.Status, comparer.DivergedIndex);
            Assert.Equal(i < 30 ? ShadowState.Ready : ShadowState.Diverged, tracker.State);
            time.Advance(TimeSpan.FromMilliseconds(10));
        }

        Assert.Equal(30, tracker.DivergedIndex);
    }
}
