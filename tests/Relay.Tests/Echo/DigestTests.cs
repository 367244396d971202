using System.Text;
using Relay.Echo;

namespace Relay.Tests.Echo;

public class DigestTests
{
    private static MessageStream RespReplies(DigestLog log) =>
        new(MessageFramer.Create(CodecOptions.For(MessageCodec.Resp), StreamDirection.Response), log);

    [Fact]
    public void DigestLog_KeepsTheLastCapacityEntries()
    {
        var log = new DigestLog(4);
        for (var i = 0; i < 10; i++)
        {
            log.Append(i * 10, (ulong)i);
        }

        Assert.Equal(10, log.Count);
        Assert.False(log.TryGet(5, out _)); // the slot the writer would overwrite next is not trusted
        Assert.True(log.TryGet(7, out var entry));
        Assert.Equal(new DigestEntry(7, 70, 7), entry);
        Assert.False(log.TryGet(10, out _));

        var copied = new DigestEntry[8];
        var n = log.CopyTo(0, copied);
        Assert.Equal([7L, 8L, 9L], copied[..n].Select(e => e.Index));
        Assert.Equal(1, log.CopyTo(9, copied));
        Assert.Equal(0, log.CopyTo(10, copied));
    }

    [Fact]
    public void DigestLog_StartsSmall_AndGrowsKeepingEveryEntry_UntilItsCapacity()
    {
        var log = new DigestLog(1000);
        Assert.Equal(1024, log.Capacity);
        Assert.Equal(DigestLog.InitialSize, log.Allocated);

        for (var i = 0; i < 100; i++)
        {
            log.Append(i * 10, (ulong)i);
        }

        Assert.Equal(128, log.Allocated);
        for (var i = 0; i < 100; i++)
        {
            Assert.True(log.TryGet(i, out var entry));
            Assert.Equal(new DigestEntry(i, i * 10, (ulong)i), entry);
        }

        var copied = new DigestEntry[200];
        Assert.Equal(100, log.CopyTo(0, copied));

        for (var i = 100; i < 3000; i++)
        {
            log.Append(i * 10, (ulong)i);
        }

        Assert.Equal(1024, log.Allocated);
        Assert.Equal(3000 - 1024 + 1, log.FirstRetained);
        Assert.False(log.TryGet(3000 - 1024, out _));
        Assert.True(log.TryGet(3000 - 1023, out _));
        Assert.True(log.TryGet(2999, out _));
    }

    [Fact]
    public void DigestLog_TryAppend_PastTheRing_GrowsToHoldTheIndex_AndLeavesTheGapUnavailable()
    {
        var log = new DigestLog(1024);
        for (var i = 0; i < 4; i++)
        {
            Assert.True(log.TryAppend(new DigestEntry(i, i, (ulong)i)));
        }

        Assert.True(log.TryAppend(new DigestEntry(500, 500, 500)));
        Assert.Equal(512, log.Allocated);
        Assert.True(log.TryGet(3, out var kept));
        Assert.Equal(3UL, kept.Digest);
        Assert.True(log.TryGet(500, out _));
        Assert.False(log.TryGet(100, out _));
        Assert.False(log.TryAppend(new DigestEntry(499, 499, 499)));

        // Far past the capacity: the ring is full size and only the newest entry is held.
        Assert.True(log.TryAppend(new DigestEntry(5000, 5000, 5000)));
        Assert.Equal(1024, log.Allocated);
        Assert.True(log.TryGet(5000, out _));
        Assert.False(log.TryGet(500, out _));
    }

    [Fact]
    public void DigestLog_Compare_ReportsMatchDivergedPendingUnavailable()
    {
        var log = new DigestLog(4);
        for (var i = 0; i < 6; i++)
        {
            log.Append(i, (ulong)(100 + i));
        }

        Assert.Equal(DigestMatch.Match, log.Compare(new DigestEntry(5, 5, 105)));
        Assert.Equal(DigestMatch.Diverged, log.Compare(new DigestEntry(4, 4, 999)));
        Assert.Equal(DigestMatch.Pending, log.Compare(new DigestEntry(6, 6, 106)));
        Assert.Equal(DigestMatch.Unavailable, log.Compare(new DigestEntry(0, 0, 100)));
    }

    [Fact]
    public void SameOutput_Matches_WhicheverSideIsAhead()
    {
        var replies = Encoding.ASCII.GetBytes("+OK\r\n:1\r\n$3\r\nabc\r\n*2\r\n+a\r\n+b\r\n");
        var primaryLog = new DigestLog(64);
        var primary = RespReplies(primaryLog);
        var comparer = new DigestComparer(64);
        var shadow = RespReplies(comparer.Shadow);

        // the shadow's backend answers the first two before the relay's digests arrive
        Assert.True(shadow.Feed(replies.AsSpan(0, 9)));
        Assert.Equal(DigestStatus.Match, comparer.Compare()); // nothing from the primary yet: not behind

        Assert.True(primary.Feed(replies));
        var shipped = new DigestEntry[16];
        var n = primaryLog.CopyTo(0, shipped);
        Assert.Equal(4, n);
        foreach (var entry in shipped[..n])
        {
            comparer.AddPrimary(entry);
        }

        Assert.Equal(DigestStatus.Pending, comparer.Status); // two of the primary's not produced yet
        Assert.Equal(2, comparer.Matched);

        Assert.True(shadow.Feed(replies.AsSpan(9)));
        Assert.Equal(DigestStatus.Match, comparer.Compare());
        Assert.Equal(4, comparer.Matched);
        Assert.Equal(-1, comparer.DivergedIndex);
    }

    [Fact]
    public void ADifferentResponse_Diverges_AtItsIndex_AndStaysDiverged()
    {
        var primaryLog = new DigestLog(64);
        var primary = RespReplies(primaryLog);
        var comparer = new DigestComparer(64);
        var shadow = RespReplies(comparer.Shadow);
        Assert.True(primary.Feed("+OK\r\n:1\r\n:2\r\n:3\r\n"u8));
        Assert.True(shadow.Feed("+OK\r\n:1\r\n:9\r\n:3\r\n"u8));
        for (var i = 0; i < 4; i++)
        {
            Assert.True(primaryLog.TryGet(i, out var entry));
            comparer.AddPrimary(entry);
        }

        Assert.Equal(DigestStatus.Diverged, comparer.Status);
        Assert.Equal(2, comparer.DivergedIndex);
        Assert.Equal(13, comparer.DivergedOffset); // end of ":2\r\n"
        Assert.Equal(2, comparer.Matched);
        Assert.Equal(DigestStatus.Diverged, comparer.AddShadow(0, 0));
    }

    [Fact]
    public void RawWindows_CompareAcrossDifferentChunking()
    {
        var random = new Random(7);
        var output = new byte[3 * 4096 + 100];
        random.NextBytes(output);
        var primaryLog = new DigestLog(16);
        var primary = new MessageStream(MessageFramer.Create(CodecOptions.For(MessageCodec.Raw), StreamDirection.Response), primaryLog);
        var comparer = new DigestComparer(16);
        var shadow = new MessageStream(MessageFramer.Create(CodecOptions.For(MessageCodec.Raw), StreamDirection.Response), comparer.Shadow);
        Assert.True(primary.Feed(output));
        for (var offset = 0; offset < output.Length; offset += 1000)
        {
            Assert.True(shadow.Feed(output.AsSpan(offset, Math.Min(1000, output.Length - offset))));
        }

        for (var i = 0; i < primaryLog.Count; i++)
        {
            Assert.True(primaryLog.TryGet(i, out var entry));
            comparer.AddPrimary(entry);
        }

        Assert.Equal(DigestStatus.Match, comparer.Status);
        Assert.Equal(3, comparer.Matched);

        output[2 * 4096 + 5] ^= 1; // one flipped bit in the third window
        var other = new DigestComparer(16);
        var flipped = new MessageStream(MessageFramer.Create(CodecOptions.For(MessageCodec.Raw), StreamDirection.Response), other.Shadow);
        Assert.True(flipped.Feed(output));
        for (var i = 0; i < primaryLog.Count; i++)
        {
            Assert.True(primaryLog.TryGet(i, out var entry));
            other.AddPrimary(entry);
        }

        Assert.Equal(DigestStatus.Diverged, other.Status);
        Assert.Equal(2, other.DivergedIndex);
        Assert.Equal(3 * 4096, other.DivergedOffset);
    }

    [Fact]
    public void DigestsTheRingDropped_AreSkipped_NotCountedAsMatches()
    {
        var comparer = new DigestComparer(4);
        for (var i = 0; i < 10; i++)
        {
            comparer.Shadow.Append(i, (ulong)i); // the shadow runs far ahead of the shipped digests
        }

        comparer.AddPrimary(new DigestEntry(0, 0, 0));
        comparer.AddPrimary(new DigestEntry(9, 9, 9)); // the relay's ring lost 1..8 before shipping
        Assert.Equal(DigestStatus.Match, comparer.Status);
        Assert.Equal(1, comparer.Matched);
        Assert.Equal(9, comparer.Skipped);
    }

    [Fact]
    public void AHugeGapInThePrimarysDigests_IsSkippedAtOnce()
    {
        var comparer = new DigestComparer(8);
        comparer.AddPrimary(new DigestEntry(0, 10, 1));
        comparer.AddShadow(10, 1);
        comparer.AddPrimary(new DigestEntry(1_000_000_000_000, 5, 7)); // a relay that lost digests for a very long time
        Assert.Equal(DigestStatus.Pending, comparer.Status);
        for (var i = 1; i < 20; i++)
        {
            comparer.AddShadow(10 + i, (ulong)i);
        }

        Assert.Equal(DigestStatus.Pending, comparer.Status);
        Assert.Equal(1, comparer.Matched);
        Assert.Equal(19, comparer.Skipped);
    }

    [Fact]
    public async Task DigestLog_ConcurrentReader_WhileTheRingGrows_LosesNoEntry()
    {
        // Below its capacity the ring never drops an entry, so every index below the count a reader
        // saw must read back whole, whichever array (before or after a growth) it reads.
        const int Total = 60_000;
        var log = new DigestLog(1 << 16);
        var writer = Task.Run(() =>
        {
            for (var i = 0; i < Total; i++)
            {
                log.Append(i * 3L, (ulong)i * 0x9E3779B97F4A7C15UL);
            }
        });

        var buffer = new DigestEntry[40];
        long checkedEntries = 0;
        do
        {
            var count = log.Count;
            var from = Math.Max(0, count - 40);
            var n = log.CopyTo(from, buffer);
            Assert.True(n >= count - from, $"copied {n} of the {count - from} entries from {from}");
            for (var k = 0; k < n; k++)
            {
                Assert.Equal(from + k, buffer[k].Index);
                Assert.Equal(buffer[k].Index * 3, buffer[k].EndOffset);
            }

            if (count > 0)
            {
                var probe = count / 2;
                Assert.True(log.TryGet(probe, out var entry), $"index {probe} of {count}");
                Assert.Equal((ulong)probe * 0x9E3779B97F4A7C15UL, entry.Digest);
            }

            checkedEntries += n;
        }
        while (!writer.IsCompleted || checkedEntries == 0);

        await writer.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(65_536, log.Allocated);
    }

    [Fact]
    public async Task DigestLog_ConcurrentReader_NeverSeesATornOrWrongEntry()
    {
        var log = new DigestLog(64);
        const int Total = 2_000_000;
        var writer = Task.Run(() =>
        {
            for (var i = 0; i < Total; i++)
            {
                log.Append(i * 3L, (ulong)i * 0x9E3779B97F4A7C15UL);
            }
        });

        var buffer = new DigestEntry[32];
        long checkedEntries = 0;

        // Until something was checked: in a Release build the writer can finish before the reader's first
        // look (CI saw it once), and the retained tail must read back whole then too.
        do
        {
            var from = Math.Max(0, log.Count - 40);
            var n = log.CopyTo(from, buffer);
            for (var k = 0; k < n; k++)
            {
                var e = buffer[k];
                Assert.Equal(e.Index * 3, e.EndOffset);
                Assert.Equal((ulong)e.Index * 0x9E3779B97F4A7C15UL, e.Digest);
                checkedEntries++;
            }
        }
        while (!writer.IsCompleted || checkedEntries == 0);

        await writer.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.True(checkedEntries > 0);
    }
}
