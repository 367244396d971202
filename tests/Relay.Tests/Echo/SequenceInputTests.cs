using System.Buffers;
using System.Text;
using Relay.Echo;

namespace Relay.Tests.Echo;

/// <summary>Pumps hand over <see cref="ReadOnlySequence{T}"/>s of several segments; they must frame like one span.</summary>
public class SequenceInputTests
{
    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory, Segment? previous)
        {
            Memory = memory;
            if (previous is not null)
            {
                RunningIndex = previous.RunningIndex + previous.Memory.Length;
                previous.Next = this;
            }
        }
    }

    private static ReadOnlySequence<byte> Split(byte[] bytes, params int[] cuts)
    {
        Segment? first = null;
        Segment? last = null;
        var start = 0;
        foreach (var cut in cuts.Append(bytes.Length))
        {
            last = new Segment(bytes.AsMemory(start, cut - start), last);
            first ??= last;
            start = cut;
        }

        return new ReadOnlySequence<byte>(first!, 0, last!, last!.Memory.Length);
    }

    [Fact]
    public void MessageStream_FramesAMultiSegmentSequence_LikeOneSpan()
    {
        var bytes = Encoding.ASCII.GetBytes("*2\r\n$3\r\nfoo\r\n:1\r\n+OK\r\n$5\r\nhel");
        var sequence = Split(bytes, 3, 9, 10, 22);
        Assert.False(sequence.IsSingleSegment);
        var stream = new MessageStream(MessageFramer.Create(CodecOptions.For(MessageCodec.Resp), StreamDirection.Response), new DigestLog(8));
        Assert.True(stream.Feed(sequence));
        Assert.Equal(2, stream.Messages);
        Assert.Equal(22, stream.SplicePoint);
        Assert.Equal(bytes.Length, stream.BytesFed);
        Assert.True(stream.Digests!.TryGet(1, out var ok));
        Assert.Equal(System.IO.Hashing.XxHash3.HashToUInt64("+OK\r\n"u8), ok.Digest);
    }

    [Fact]
    public void MessageStream_StopsAtAMalformedSegment_WithItsAbsoluteOffset()
    {
        var bytes = Encoding.ASCII.GetBytes("+OK\r\n+OK\r\n+bad\n+OK\r\n");
        var stream = new MessageStream(MessageFramer.Create(CodecOptions.For(MessageCodec.Resp), StreamDirection.Response));
        Assert.False(stream.Feed(Split(bytes, 7, 12)));
        Assert.Equal(FramingError.InvalidLineEnding, stream.Error);
        Assert.Equal(14, stream.ErrorOffset);
        Assert.Equal(2, stream.Messages);
    }

    [Fact]
    public void EchoLog_AppendsAMultiSegmentSequence()
    {
        var bytes = new byte[3000];
        new Random(5).NextBytes(bytes);
        using var log = new EchoLog(new EchoLogOptions(SegmentBytes: 1024));
        Assert.True(log.Append(Split(bytes, 100, 1500, 1501)));
        var read = new byte[3000];
        Assert.True(log.TryRead(0, read, out var copied));
        Assert.Equal(3000, copied);
        Assert.Equal(bytes, read);
    }
}
