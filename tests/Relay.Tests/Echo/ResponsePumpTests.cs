using System.Buffers;
using System.IO.Pipelines;
using Relay.Echo;

namespace Relay.Tests.Echo;

/// <summary>
/// The response pump's loop over a real <see cref="Pipe"/>, as L4 will run it: the client only
/// ever receives whole messages, every byte exactly once, however the upstream's writes are cut.
/// </summary>
public class ResponsePumpTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public async Task FeedBuffered_ForwardsOnlyWholeReplies_AndEveryByteOnce(int seed)
    {
        var random = new Random(seed);
        var stream = MessageGenerators.RespReplies(random, 2000);
        var ends = stream.Ends.Select(e => e.End).ToHashSet();

        // The rule docs/echo.md gives the integrator: the pipe must be able to hold the largest
        // message plus one write, or a held partial message pauses the writer for ever.
        var largest = stream.Ends.Zip(stream.Ends.Skip(1), (a, b) => b.End - a.End).Append(stream.Ends[0].End).Max();
        var threshold = Math.Max(2048, largest + 1024);
        Assert.True(stream.Bytes.Length > 4 * threshold, "the stream must span many pipe reads");
        var pipe = new Pipe(new PipeOptions(pauseWriterThreshold: threshold, resumeWriterThreshold: threshold / 2, useSynchronizationContext: false));
        var chunks = new Random(seed + 100);

        var upstream = Task.Run(async () =>
        {
            for (var offset = 0; offset < stream.Bytes.Length;)
            {
                var n = Math.Min(stream.Bytes.Length - offset, chunks.Next(1, 700));
                await pipe.Writer.WriteAsync(stream.Bytes.AsMemory(offset, n));
                offset += n;
            }

            await pipe.Writer.CompleteAsync();
        });

        var output = new MessageStream(MessageFramer.Create(CodecOptions.For(MessageCodec.Resp), StreamDirection.Response));
        var client = new ArrayBufferWriter<byte>();
        long delivered = 0;
        var writes = 0;
        while (true)
        {
            var result = await pipe.Reader.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
            var buffer = result.Buffer;
            Assert.True(output.FeedBuffered(buffer, delivered, out var whole), FramingErrorText.Describe(output.Error));
            if (!whole.IsEmpty)
            {
                foreach (var segment in whole)
                {
                    client.Write(segment.Span);
                }

                delivered += whole.Length;
                writes++;
                Assert.Contains(delivered, ends); // each write to the client ends on a reply boundary
            }

            pipe.Reader.AdvanceTo(whole.End, buffer.End);
            if (result.IsCompleted)
            {
                Assert.Equal(buffer.Length, whole.Length); // the stream ended on a boundary: nothing is held back
                break;
            }
        }

        await upstream.WaitAsync(TimeSpan.FromSeconds(10));
        await pipe.Reader.CompleteAsync();
        Assert.Equal(stream.Bytes, client.WrittenSpan.ToArray());
        Assert.Equal(2000, output.Messages);
        Assert.True(writes > 1);
    }

    [Fact]
    public void FeedBuffered_HoldsAPartialReply_UntilTheRestArrives()
    {
        var output = new MessageStream(MessageFramer.Create(CodecOptions.For(MessageCodec.Resp), StreamDirection.Response));
        var first = new ReadOnlySequence<byte>("+OK\r\n$5\r\nhe"u8.ToArray());
        Assert.True(output.FeedBuffered(first, 0, out var whole));
        Assert.Equal(5, whole.Length);

        // the pump consumed 5; the pipe hands back the held "$5\r\nhe" followed by the rest
        var second = new ReadOnlySequence<byte>("$5\r\nhello\r\n:1"u8.ToArray());
        Assert.True(output.FeedBuffered(second, 5, out whole));
        Assert.Equal(11, whole.Length);
        Assert.Equal(2, output.Messages);
        Assert.Equal(18, output.BytesFed);
        Assert.Throws<ArgumentOutOfRangeException>(() => output.FeedBuffered(second, 100, out _));
    }

    [Fact]
    public void RewindToSplicePoint_DropsTheDeadHostsPartialReply_AndCountsCarryOn()
    {
        var digests = new DigestLog(8);
        var output = new MessageStream(MessageFramer.Create(CodecOptions.For(MessageCodec.Resp), StreamDirection.Response), digests);
        Assert.True(output.Feed("+OK\r\n$5\r\nhe"u8)); // the primary dies two bytes into its second reply
        output.RewindToSplicePoint();
        Assert.Equal(5, output.BytesFed);
        Assert.True(output.Feed("$5\r\nhello\r\n"u8)); // the shadow's copy of that reply, whole
        Assert.Equal(2, output.Messages);
        Assert.Equal(16, output.SplicePoint);
        Assert.True(digests.TryGet(1, out var second));
        Assert.Equal(new DigestEntry(1, 16, System.IO.Hashing.XxHash3.HashToUInt64("$5\r\nhello\r\n"u8)), second);
    }
}
