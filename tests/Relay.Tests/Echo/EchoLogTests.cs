using System.Buffers;
using Relay.Echo;

namespace Relay.Tests.Echo;

public class EchoLogTests
{
    private static byte At(long offset) => (byte)((offset * 31) ^ (offset >> 8));

    private static byte[] Stream(long from, int count)
    {
        var bytes = new byte[count];
        for (var i = 0; i < count; i++)
        {
            bytes[i] = At(from + i);
        }

        return bytes;
    }

    private static void AssertHolds(EchoLog log, long from, int count)
    {
        var read = new byte[count];
        Assert.True(log.TryRead(from, read, out var copied));
        Assert.Equal(count, copied);
        Assert.Equal(Stream(from, count), read);
    }

    [Fact]
    public void Append_ThenRead_AnyRangeAcrossSegments()
    {
        using var log = new EchoLog(new EchoLogOptions(RetentionCapBytes: 1 << 20, SegmentBytes: 1024));
        long offset = 0;
        var random = new Random(3);
        while (offset < 10_000)
        {
            var chunk = Stream(offset, random.Next(0, 3000));
            Assert.True(log.Append(chunk));
            offset += chunk.Length;
        }

        Assert.Equal(offset, log.Length);
        Assert.Equal(0, log.Start);
        for (var i = 0; i < 50; i++)
        {
            var from = random.Next(0, (int)offset);
            AssertHolds(log, from, random.Next(0, (int)offset - from));
        }

        Assert.True(log.TryRead(offset, new byte[10], out var atEnd));
        Assert.Equal(0, atEnd);
        Assert.Throws<ArgumentOutOfRangeException>(() => log.TryRead(offset + 1, new byte[1], out _));
    }

    [Fact]
    public void WriteTo_GivesATakeoverTail()
    {
        using var log = new EchoLog(new EchoLogOptions(RetentionCapBytes: 1 << 20, SegmentBytes: 512));
        Assert.True(log.Append(Stream(0, 5000)));
        var tail = new ArrayBufferWriter<byte>();
        Assert.True(log.WriteTo(1234, 4321, tail));
        Assert.Equal(Stream(1234, 4321 - 1234), tail.WrittenSpan.ToArray());
    }

    [Fact]
    public void UnderTheCap_ALateShadowReplaysFromZero()
    {
        using var log = new EchoLog(new EchoLogOptions(RetentionCapBytes: 8192, SegmentBytes: 1024));
        Assert.True(log.Append(Stream(0, 8000)));
        Assert.True(log.CanAddShadow);
        Assert.Null(log.CannotAddShadowReason);
        Assert.True(log.TryAddShadow(out var late, out var reason), reason);
        Assert.Equal(0, log.Acked(late));
        AssertHolds(log, 0, 8000);
    }

    [Fact]
    public void OverTheCap_TrimsToTheSlowestAck_AndRefusesNewShadows()
    {
        using var log = new EchoLog(new EchoLogOptions(RetentionCapBytes: 4096, SegmentBytes: 1024));
        Assert.True(log.TryAddShadow(out var a, out _));
        Assert.True(log.TryAddShadow(out var b, out _));
        Assert.True(log.Append(Stream(0, 4000)));
        log.Ack(a, 3000);
        log.Ack(b, 2100);
        Assert.True(log.Append(Stream(4000, 500))); // 4500 > cap: trim to b's ack, in whole segments

        Assert.Equal(2048, log.Start);
        Assert.False(log.IsEvicted(a));
        Assert.False(log.IsEvicted(b));
        AssertHolds(log, 2100, 2400); // everything b still needs
        Assert.False(log.TryRead(1000, new byte[10], out _));
        Assert.False(log.CanAddShadow);
        Assert.Contains("retention cap of 4096 bytes", log.CannotAddShadowReason, StringComparison.Ordinal);
        Assert.False(log.TryAddShadow(out _, out var reason));
        Assert.Equal(log.CannotAddShadowReason, reason);
    }

    [Fact]
    public void AShadowFurtherBehindThanTheCap_IsEvicted_AndMemoryStaysBounded()
    {
        using var log = new EchoLog(new EchoLogOptions(RetentionCapBytes: 4096, SegmentBytes: 1024));
        Assert.True(log.TryAddShadow(out var stuck, out _));
        Assert.True(log.TryAddShadow(out var keeping, out _));
        long offset = 0;
        for (var i = 0; i < 100; i++)
        {
            Assert.True(log.Append(Stream(offset, 700)));
            offset += 700;
            log.Ack(keeping, offset - 100);
            Assert.InRange(log.RetainedBytes, 0, 4096 + 1024);
        }

        Assert.True(log.IsEvicted(stuck));
        Assert.False(log.IsEvicted(keeping));
        AssertHolds(log, log.Acked(keeping), (int)(offset - log.Acked(keeping)));
    }

    [Fact]
    public void AsTheSegmentRingGrowsAndWraps_EveryRetainedByteReadsBack()
    {
        // Small segments and a cap of 32 of them: the segment ring grows from its first few slots,
        // then wraps many times as the cap trims; after every append the whole retained range must
        // read back.
        var random = new Random(7);
        using var log = new EchoLog(new EchoLogOptions(RetentionCapBytes: 32 * 256, SegmentBytes: 256));
        Assert.True(log.TryAddShadow(out var shadow, out _));
        long offset = 0;
        for (var i = 0; i < 400; i++)
        {
            var count = random.Next(1, 1500);
            Assert.True(log.Append(Stream(offset, count)));
            offset += count;
            if (random.Next(4) == 0)
            {
                log.Ack(shadow, offset - random.Next(0, (int)Math.Min(offset, 6000)));
            }

            Assert.Equal(offset, log.Length);
            Assert.InRange(log.RetainedBytes, 0, (32 * 256) + 256);
            AssertHolds(log, log.Start, (int)log.RetainedBytes);
        }

        Assert.True(log.Start > 0);
    }

    [Fact]
    public void Acks_NeverMoveBack_AndCannotPassTheEnd()
    {
        using var log = new EchoLog(new EchoLogOptions());
        Assert.True(log.TryAddShadow(out var s, out _));
        Assert.True(log.Append(new byte[100]));
        log.Ack(s, 80);
        log.Ack(s, 20);
        Assert.Equal(80, log.Acked(s));
        Assert.Throws<ArgumentOutOfRangeException>(() => log.Ack(s, 101));
    }

    [Fact]
    public void ShadowSlots_AreBounded_AndReusable()
    {
        using var log = new EchoLog(new EchoLogOptions(MaxShadows: 2));
        Assert.True(log.TryAddShadow(out var first, out _));
        Assert.True(log.TryAddShadow(out _, out _));
        Assert.False(log.TryAddShadow(out _, out var reason));
        Assert.Contains("2 shadows", reason, StringComparison.Ordinal);
        log.RemoveShadow(first);
        Assert.True(log.TryAddShadow(out var again, out _));
        Assert.Equal(first, again);
    }

    [Fact]
    public void WithACodec_CountsRequestMessages_AndRefusesMalformedInput()
    {
        var framing = new MessageStream(MessageFramer.Create(CodecOptions.For(MessageCodec.Resp), StreamDirection.Request));
        using var log = new EchoLog(new EchoLogOptions(), framing);
        Assert.True(log.Append("*1\r\n$4\r\nPING\r\nGET k\r\n*2\r\n$3\r\nGET"u8));
        Assert.Equal(2, log.Messages);
        Assert.Equal(21, framing.SplicePoint); // 14 + 7: the partial GET is held back
        Assert.False(log.Append("\r\n:1\r\n"u8));
        Assert.Equal(FramingError.InvalidRequest, framing.Error);
    }

    [Fact]
    public void SegmentsComeFromThePool_AndAllGoBack()
    {
        var pool = new CountingPool();
        var log = new EchoLog(new EchoLogOptions(RetentionCapBytes: 4096, SegmentBytes: 1024), pool: pool);
        for (var i = 0; i < 50; i++)
        {
            Assert.True(log.Append(new byte[300]));
        }

        Assert.InRange(pool.Outstanding, 1, 5);
        log.Dispose();
        Assert.Equal(0, pool.Outstanding);
        Assert.Throws<ObjectDisposedException>(() => log.Append(new byte[1]));
    }

    [Fact]
    public async Task OneWriterAndConcurrentReaders_AlwaysReadTheRightBytes()
    {
        using var log = new EchoLog(new EchoLogOptions(RetentionCapBytes: 64 * 1024, SegmentBytes: 4096));
        Assert.True(log.TryAddShadow(out var shadow, out _));
        const long Total = 8 * 1024 * 1024;
        var writer = Task.Run(() =>
        {
            var random = new Random(11);
            long offset = 0;
            while (offset < Total)
            {
                var chunk = Stream(offset, random.Next(1, 9000));
                Assert.True(log.Append(chunk));
                offset += chunk.Length;
            }
        });

        async Task ReadAndAck(int seed)
        {
            await Task.Yield();
            var random = new Random(seed);
            var buffer = new byte[10_000];
            long reads = 0;
            while (!writer.IsCompleted || reads == 0)
            {
                var length = log.Length;
                var from = Math.Max(0, length - random.Next(0, 100_000));
                if (log.TryRead(from, buffer, out var copied))
                {
                    for (var i = 0; i < copied; i++)
                    {
                        if (buffer[i] != At(from + i))
                        {
                            Assert.Fail($"byte {from + i} read as {buffer[i]}");
                        }
                    }

                    reads++;
                }

                log.Ack(shadow, Math.Max(0, log.Length - 1000)); // the shipper keeps the trim moving
            }
        }

        await Task.WhenAll(writer, ReadAndAck(1), ReadAndAck(2)).WaitAsync(TimeSpan.FromSeconds(60));
        Assert.InRange(log.Length, Total, Total + 9000);
        Assert.True(log.Start > 0, "the acks should have let the log trim");
        Assert.InRange(log.RetainedBytes, 0, (64 * 1024) + 4096);
    }

    private sealed class CountingPool : ArrayPool<byte>
    {
        public int Outstanding { get; private set; }

        public override byte[] Rent(int minimumLength)
        {
            Outstanding++;
            return new byte[minimumLength];
        }

        public override void Return(byte[] array, bool clearArray = false) => Outstanding--;
    }
}
