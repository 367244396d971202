using System.Text;
using Relay.Echo;

namespace Relay.Tests.Echo;

public class RespFramerTests
{
    private static MessageFramer Replies(int maxMessageBytes = CodecDefaults.MaxMessageBytes, int maxDepth = CodecDefaults.MaxNestingDepth) =>
        MessageFramer.Create(new CodecOptions(MessageCodec.Resp, maxMessageBytes, maxDepth), StreamDirection.Response);

    private static MessageFramer Requests(int maxMessageBytes = CodecDefaults.MaxMessageBytes) =>
        MessageFramer.Create(new CodecOptions(MessageCodec.Resp, maxMessageBytes), StreamDirection.Request);

    private static byte[] B(string text) => Encoding.ASCII.GetBytes(text);

    [Theory]
    [InlineData("+OK\r\n")]
    [InlineData("-ERR unknown command\r\n")]
    [InlineData(":-42\r\n")]
    [InlineData("$5\r\nhello\r\n")]
    [InlineData("$0\r\n\r\n")]
    [InlineData("$-1\r\n")]
    [InlineData("*-1\r\n")]
    [InlineData("*2\r\n$3\r\nfoo\r\n*1\r\n:1\r\n")]
    [InlineData("_\r\n")]
    [InlineData("#t\r\n")]
    [InlineData(",1.5e10\r\n")]
    [InlineData("(-12345678901234567890123\r\n")]
    [InlineData("!21\r\nSYNTAX invalid syntax\r\n")]
    [InlineData("=15\r\ntxt:Some string\r\n")]
    [InlineData("%2\r\n+first\r\n:1\r\n+second\r\n:2\r\n")]
    [InlineData("~3\r\n+a\r\n+b\r\n+c\r\n")]
    [InlineData(">3\r\n+message\r\n+channel\r\n$5\r\nhello\r\n")]
    [InlineData("|1\r\n+ttl\r\n:3600\r\n*2\r\n:1\r\n:2\r\n")]
    [InlineData("*3\r\n:1\r\n|1\r\n+a\r\n+b\r\n:2\r\n:3\r\n")] // an attribute inside an array is not an element
    [InlineData("*1\r\n*1\r\n*1\r\n*0\r\n")]
    [InlineData("|0\r\n+OK\r\n")]
    public void EachReplyType_IsOneMessage(string reply)
    {
        var bytes = B(reply);
        var outcome = FramingHarness.Whole(Replies(), bytes);
        Assert.Equal(FramingError.None, outcome.Error);
        Assert.Equal([(bytes.LongLength, FrameStatus.MessageEnd)], outcome.Boundaries);

        // and no boundary before the last byte, whichever byte a chunk ends on
        var byteByByte = FramingHarness.Chunked(Replies(), bytes, Enumerable.Repeat(1, bytes.Length).ToArray());
        Assert.Equal(outcome.Boundaries, byteByByte.Boundaries);
    }

    [Fact]
    public void AnAttribute_DoesNotEndTheMessage()
    {
        var outcome = FramingHarness.Whole(Replies(), B("|1\r\n+key\r\n+value\r\n"));
        Assert.Empty(outcome.Boundaries);
        Assert.Equal(FramingError.None, outcome.Error);
    }

    [Fact]
    public void ABulkPayload_IsBinarySafe()
    {
        var payload = B("*1\r\n$3\r\n+OK\r\n:5\r\n\n\r\n");
        var bytes = B($"${payload.Length}\r\n").Concat(payload).Concat(B("\r\n:7\r\n")).ToArray();
        var outcome = FramingHarness.Whole(Replies(), bytes);
        Assert.Equal(2, outcome.Boundaries.Count);
        Assert.Equal(bytes.Length - 4, outcome.Boundaries[0].End);
    }

    [Theory]
    [InlineData("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n", nameof(FrameStatus.MessageEnd))]
    [InlineData("PING\r\n", nameof(FrameStatus.MessageEnd))]
    [InlineData("set k \"a b\"\n", nameof(FrameStatus.MessageEnd))]
    [InlineData("+PING\r\n", nameof(FrameStatus.MessageEnd))] // Redis reads anything but '*' as inline
    [InlineData("\r\n", nameof(FrameStatus.SeparatorEnd))]
    [InlineData(" \t \n", nameof(FrameStatus.SeparatorEnd))]
    [InlineData("*0\r\n", nameof(FrameStatus.SeparatorEnd))]
    [InlineData("*-1\r\n", nameof(FrameStatus.SeparatorEnd))]
    public void Requests_FrameAsRedisReadsThem(string request, string kindName)
    {
        var kind = Enum.Parse<FrameStatus>(kindName);
        var bytes = B(request);
        var outcome = FramingHarness.Chunked(Requests(), bytes, Enumerable.Repeat(1, bytes.Length).ToArray());
        Assert.Equal(FramingError.None, outcome.Error);
        Assert.Equal([(bytes.LongLength, kind)], outcome.Boundaries);
    }

    [Theory]
    [InlineData("?oops\r\n", nameof(FramingError.InvalidType), 0)]
    [InlineData("+OK\n", nameof(FramingError.InvalidLineEnding), 3)]
    [InlineData("+OK\rX", nameof(FramingError.InvalidLineEnding), 4)]
    [InlineData(":12a\r\n", nameof(FramingError.InvalidNumber), 3)]
    [InlineData(":\r\n", nameof(FramingError.InvalidNumber), 1)]
    [InlineData(":-\r\n", nameof(FramingError.InvalidNumber), 2)]
    [InlineData(":123456789012345678901\r\n", nameof(FramingError.InvalidNumber), 20)]
    [InlineData("$+5\r\nhello\r\n", nameof(FramingError.InvalidNumber), 1)]
    [InlineData("$-2\r\n", nameof(FramingError.InvalidLength), 5)]
    [InlineData("!-1\r\n", nameof(FramingError.InvalidLength), 5)]
    [InlineData("%-1\r\n", nameof(FramingError.InvalidLength), 5)]
    [InlineData("$1234567890123456789\r\n", nameof(FramingError.InvalidLength), 19)]
    [InlineData("$3\r\nabcd\r\n", nameof(FramingError.MissingTrailer), 7)]
    [InlineData("$3\r\nabc\rX", nameof(FramingError.MissingTrailer), 8)]
    [InlineData("_x\r\n", nameof(FramingError.InvalidValue), 1)]
    [InlineData("#x\r\n", nameof(FramingError.InvalidValue), 1)]
    [InlineData("#tt\r\n", nameof(FramingError.InvalidValue), 2)]
    [InlineData("$?\r\n;4\r\nHell\r\n;0\r\n", nameof(FramingError.StreamedNotSupported), 1)]
    [InlineData("*?\r\n:1\r\n.\r\n", nameof(FramingError.StreamedNotSupported), 1)]
    [InlineData("*1\r\n:1\r\nXYZ", nameof(FramingError.InvalidType), 8)]
    public void MalformedReplies_GiveAClearError_AtTheOffendingByte(string input, string errorName, long offset)
    {
        var error = Enum.Parse<FramingError>(errorName);
        var bytes = B(input);
        var whole = FramingHarness.Whole(Replies(), bytes);
        var byteByByte = FramingHarness.Chunked(Replies(), bytes, Enumerable.Repeat(1, bytes.Length).ToArray());
        Assert.Equal(error, whole.Error);
        Assert.Equal(offset, whole.ErrorOffset);
        Assert.Equal(error, byteByByte.Error);
        Assert.Equal(offset, byteByByte.ErrorOffset);
        Assert.NotEqual("unknown framing error", FramingErrorText.Describe(error));
    }

    [Theory]
    [InlineData("*2\r\n$3\r\nGET\r\n:1\r\n", nameof(FramingError.InvalidRequest))]
    [InlineData("*1\r\n*1\r\n$1\r\na\r\n", nameof(FramingError.InvalidRequest))]
    [InlineData("*1\r\n$-1\r\n", nameof(FramingError.InvalidLength))]
    public void MalformedRequests_GiveAClearError(string input, string errorName)
    {
        var error = Enum.Parse<FramingError>(errorName);
        Assert.Equal(error, FramingHarness.Whole(Requests(), B(input)).Error);
    }

    [Fact]
    public void AFailedFramer_StaysFailed_UntilReset()
    {
        var framer = Replies();
        Assert.Equal(FrameStatus.Error, framer.Advance(B("?\r\n"), out _));
        Assert.Equal(FrameStatus.Error, framer.Advance(B("+OK\r\n"), out var consumed));
        Assert.Equal(0, consumed);
        framer.Reset();
        Assert.Equal(FrameStatus.MessageEnd, framer.Advance(B("+OK\r\n"), out consumed));
        Assert.Equal(5, consumed);
    }

    [Fact]
    public void ABulkStringOverTheLimit_FailsAtItsHeader_BeforeThePayloadArrives()
    {
        var framer = Replies(maxMessageBytes: 1000);
        var outcome = FramingHarness.Whole(framer, B("$995\r\n"));
        Assert.Equal(FramingError.MessageTooLarge, outcome.Error);

        var fits = FramingHarness.Whole(Replies(maxMessageBytes: 1000), B($"$992\r\n{new string('x', 992)}\r\n"));
        Assert.Equal(FramingError.None, fits.Error);
        Assert.Single(fits.Boundaries);
    }

    [Fact]
    public void ManySmallElementsOverTheLimit_FailWhicheverWayTheyArrive()
    {
        var text = new StringBuilder("*1000\r\n");
        for (var i = 0; i < 1000; i++)
        {
            text.Append(":1\r\n");
        }

        var bytes = B(text.ToString());
        Assert.Equal(FramingError.MessageTooLarge, FramingHarness.Whole(Replies(maxMessageBytes: 2000), bytes).Error);
        Assert.Equal(FramingError.MessageTooLarge, FramingHarness.Chunked(Replies(maxMessageBytes: 2000), bytes, [100, 100, 100, bytes.Length - 300]).Error);
        Assert.Equal(FramingError.None, FramingHarness.Whole(Replies(maxMessageBytes: bytes.Length), bytes).Error);
    }

    [Fact]
    public void ALongSimpleString_OverTheLimit_Fails()
    {
        var bytes = B("+" + new string('a', 5000) + "\r\n");
        Assert.Equal(FramingError.MessageTooLarge, FramingHarness.Chunked(Replies(maxMessageBytes: 1000), bytes, [600, 600, bytes.Length - 1200]).Error);
        Assert.Equal(FramingError.MessageTooLarge, FramingHarness.Whole(Requests(maxMessageBytes: 1000), B(new string('a', 5000) + "\n")).Error);
    }

    [Fact]
    public void NestingDeeperThanTheLimit_Fails()
    {
        var ok = FramingHarness.Whole(Replies(maxDepth: 3), B("*1\r\n*1\r\n*1\r\n:1\r\n"));
        Assert.Equal(FramingError.None, ok.Error);
        var deep = FramingHarness.Whole(Replies(maxDepth: 3), B("*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n"));
        Assert.Equal(FramingError.NestingTooDeep, deep.Error);
    }

    [Fact]
    public void RandomGarbage_NeverThrows_AndEitherFramesOrFailsTheSameWayChunked()
    {
        var random = new Random(42);
        for (var round = 0; round < 300; round++)
        {
            // Mostly valid replies with a few flipped bytes, so the damage lands in every state.
            var stream = MessageGenerators.RespReplies(random, 10);
            var bytes = stream.Bytes;
            for (var flips = random.Next(1, 4); flips > 0; flips--)
            {
                bytes[random.Next(bytes.Length)] = (byte)random.Next(256);
            }

            var whole = FramingHarness.Whole(Replies(maxMessageBytes: 4096, maxDepth: 8), bytes);
            var chunked = FramingHarness.Random(Replies(maxMessageBytes: 4096, maxDepth: 8), bytes, random, 7);
            Assert.Equal(whole.Error, chunked.Error);
            Assert.Equal(whole.Boundaries, chunked.Boundaries);
            if (whole.Error != FramingError.None && whole.Error != FramingError.MessageTooLarge)
            {
                Assert.Equal(whole.ErrorOffset, chunked.ErrorOffset);
            }
        }
    }
}
