using System.IO.Hashing;
using Relay.Echo;

namespace Relay.Tests.Echo;

/// <summary>
/// Random valid streams cut at random chunk boundaries must frame exactly as the whole input does,
/// and both must match where the generator put the message ends.
/// </summary>
public class FramingPropertyTests
{
    public static TheoryData<int> Seeds => [1, 2, 3, 4, 5, 6, 7, 8];

    [Theory]
    [MemberData(nameof(Seeds))]
    public void Lines_ChunkedInput_FramesLikeWholeInput(int seed)
    {
        var random = new Random(seed);
        var stream = MessageGenerators.Lines(random, 300, 200);
        AssertFramesAsGenerated(MessageFramer.Create(new CodecOptions(MessageCodec.Lines, MaxMessageBytes: 1024), StreamDirection.Response), stream, random);
    }

    [Theory]
    [MemberData(nameof(Seeds))]
    public void LengthPrefixed16_ChunkedInput_FramesLikeWholeInput(int seed)
    {
        var random = new Random(seed);
        var stream = MessageGenerators.LengthPrefixed(random, 300, 2, 700);
        AssertFramesAsGenerated(MessageFramer.Create(CodecOptions.For(MessageCodec.LengthPrefixed16), StreamDirection.Response), stream, random);
    }

    [Theory]
    [MemberData(nameof(Seeds))]
    public void LengthPrefixed32_ChunkedInput_FramesLikeWholeInput(int seed)
    {
        var random = new Random(seed);
        var stream = MessageGenerators.LengthPrefixed(random, 300, 4, 3000);
        AssertFramesAsGenerated(MessageFramer.Create(CodecOptions.For(MessageCodec.LengthPrefixed32), StreamDirection.Response), stream, random);
    }

    [Theory]
    [MemberData(nameof(Seeds))]
    public void RespReplies_ChunkedInput_FramesLikeWholeInput(int seed)
    {
        var random = new Random(seed);
        var stream = MessageGenerators.RespReplies(random, 400);
        AssertFramesAsGenerated(MessageFramer.Create(CodecOptions.For(MessageCodec.Resp), StreamDirection.Response), stream, random);
    }

    [Theory]
    [MemberData(nameof(Seeds))]
    public void RespRequests_ChunkedInput_FramesLikeWholeInput(int seed)
    {
        var random = new Random(seed);
        var stream = MessageGenerators.RespRequests(random, 400);
        AssertFramesAsGenerated(MessageFramer.Create(CodecOptions.For(MessageCodec.Resp), StreamDirection.Request), stream, random);
    }

    [Theory]
    [MemberData(nameof(Seeds))]
    public void Raw_WindowsSitAtFixedOffsets_HoweverTheStreamIsCut(int seed)
    {
        var random = new Random(seed);
        var bytes = new byte[random.Next(20_000, 40_000)];
        random.NextBytes(bytes);
        var expected = Enumerable.Range(1, bytes.Length / 4096).Select(k => ((long)k * 4096, false)).ToList();
        AssertFramesAsGenerated(MessageFramer.Create(CodecOptions.For(MessageCodec.Raw), StreamDirection.Response), new MessageGenerators.Stream(bytes, expected), random);
    }

    [Theory]
    [MemberData(nameof(Seeds))]
    public void MessageStream_DigestsEachMessage_SameForAnyChunking(int seed)
    {
        var random = new Random(seed);
        var stream = MessageGenerators.RespReplies(random, 200);
        var whole = new DigestLog(1024);
        var chunked = new DigestLog(1024);
        var a = new MessageStream(MessageFramer.Create(CodecOptions.For(MessageCodec.Resp), StreamDirection.Response), whole);
        var b = new MessageStream(MessageFramer.Create(CodecOptions.For(MessageCodec.Resp), StreamDirection.Response), chunked);
        Assert.True(a.Feed(stream.Bytes));
        FeedInRandomChunks(b, stream.Bytes, random);

        Assert.Equal(200, a.Messages);
        Assert.Equal(a.Messages, b.Messages);
        Assert.Equal(stream.Bytes.Length, b.SplicePoint);
        long start = 0;
        for (var i = 0; i < 200; i++)
        {
            Assert.True(whole.TryGet(i, out var w));
            Assert.True(chunked.TryGet(i, out var c));
            var end = stream.Ends[i].End;
            Assert.Equal(new DigestEntry(i, end, XxHash3.HashToUInt64(stream.Bytes.AsSpan((int)start, (int)(end - start)))), w);
            Assert.Equal(w, c);
            start = end;
        }
    }

    [Fact]
    public void MessageStream_SplicePoint_HoldsBackAPartialMessage_AndRawDoesNot()
    {
        var resp = new MessageStream(MessageFramer.Create(CodecOptions.For(MessageCodec.Resp), StreamDirection.Response));
        Assert.True(resp.Feed("+OK\r\n$5\r\nhel"u8));
        Assert.Equal(1, resp.Messages);
        Assert.Equal(5, resp.SplicePoint);
        Assert.Equal(12, resp.BytesFed);
        Assert.True(resp.Feed("lo\r\n"u8));
        Assert.Equal(16, resp.SplicePoint);

        var raw = new MessageStream(MessageFramer.Create(CodecOptions.For(MessageCodec.Raw), StreamDirection.Response));
        Assert.True(raw.Feed(new byte[5000]));
        Assert.Equal(5000, raw.SplicePoint);
        Assert.Equal(1, raw.Messages);
    }

    [Fact]
    public void MessageStream_RequestSeparators_AreSplicePointsButNotMessages()
    {
        var stream = new MessageStream(MessageFramer.Create(CodecOptions.For(MessageCodec.Resp), StreamDirection.Request));
        Assert.True(stream.Feed("*1\r\n$4\r\nPING\r\n\r\n*0\r\nPING\r\n"u8));
        Assert.Equal(2, stream.Messages);
        Assert.Equal(2, stream.Separators);
        Assert.Equal(stream.BytesFed, stream.SplicePoint);
    }

    private static void FeedInRandomChunks(MessageStream stream, byte[] bytes, Random random)
    {
        for (var offset = 0; offset < bytes.Length;)
        {
            var size = Math.Min(bytes.Length - offset, random.Next(1, 64));
            Assert.True(stream.Feed(bytes.AsSpan(offset, size)));
            offset += size;
        }
    }

    private static void AssertFramesAsGenerated(MessageFramer framer, MessageGenerators.Stream stream, Random random)
    {
        var expected = stream.Ends.Select(e => (e.End, e.Separator ? FrameStatus.SeparatorEnd : FrameStatus.MessageEnd)).ToList();
        var whole = FramingHarness.Whole(framer, stream.Bytes);
        Assert.Equal(FramingError.None, whole.Error);
        Assert.Equal(expected, whole.Boundaries);

        foreach (var maxChunk in new[] { 1, 3, 17, 256, 5000 })
        {
            var chunked = FramingHarness.Random(framer, stream.Bytes, random, maxChunk);
            Assert.Equal(FramingError.None, chunked.Error);
            Assert.Equal(expected, chunked.Boundaries);
        }
    }
}
