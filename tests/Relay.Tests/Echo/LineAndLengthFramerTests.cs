using System.Text;
using Relay.Echo;

namespace Relay.Tests.Echo;

public class LineAndLengthFramerTests
{
    [Fact]
    public void Lines_EndAtLf_WithOrWithoutCr()
    {
        var bytes = Encoding.ASCII.GetBytes("one\ntwo\r\n\nlast without end");
        var outcome = FramingHarness.Whole(MessageFramer.Create(CodecOptions.For(MessageCodec.Lines), StreamDirection.Request), bytes);
        Assert.Equal([(4L, FrameStatus.MessageEnd), (9L, FrameStatus.MessageEnd), (10L, FrameStatus.MessageEnd)], outcome.Boundaries);
        Assert.Equal(FramingError.None, outcome.Error);
    }

    [Fact]
    public void ALineLongerThanTheMaximum_Fails_AsSoonAsItCrossesIt()
    {
        var framer = MessageFramer.Create(new CodecOptions(MessageCodec.Lines, MaxMessageBytes: 10), StreamDirection.Response);
        Assert.Equal(FrameStatus.MessageEnd, framer.Advance("123456789\n"u8, out var consumed));
        Assert.Equal(10, consumed);
        Assert.Equal(FrameStatus.NeedMore, framer.Advance("12345"u8, out _));
        Assert.Equal(FrameStatus.Error, framer.Advance("67890123456789\n"u8, out consumed));
        Assert.Equal(FramingError.MessageTooLarge, framer.Error);
        Assert.Equal(5, consumed);
    }

    [Fact]
    public void LengthPrefixed_ZeroLengthBodies_AreMessages()
    {
        var framer = MessageFramer.Create(CodecOptions.For(MessageCodec.LengthPrefixed16), StreamDirection.Response);
        var outcome = FramingHarness.Chunked(framer, [0, 0, 0, 0, 0, 1, 7], [1, 1, 1, 1, 1, 1, 1]);
        Assert.Equal([(2L, FrameStatus.MessageEnd), (4L, FrameStatus.MessageEnd), (7L, FrameStatus.MessageEnd)], outcome.Boundaries);
    }

    [Fact]
    public void LengthPrefixed_ALengthOverTheMaximum_FailsAtTheHeader()
    {
        var framer = MessageFramer.Create(new CodecOptions(MessageCodec.LengthPrefixed32, MaxMessageBytes: 1 << 20), StreamDirection.Response);
        var outcome = FramingHarness.Whole(framer, [0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3]);
        Assert.Equal(FramingError.MessageTooLarge, outcome.Error);
        Assert.Equal(4, outcome.ErrorOffset);

        var justFits = MessageFramer.Create(new CodecOptions(MessageCodec.LengthPrefixed16, MaxMessageBytes: 12), StreamDirection.Response);
        Assert.Equal(FramingError.None, FramingHarness.Whole(justFits, [0, 10, .. new byte[10]]).Error);
        Assert.Equal(FramingError.MessageTooLarge, FramingHarness.Whole(justFits, [0, 11, .. new byte[11]]).Error);
    }

    [Fact]
    public void Options_AreValidated()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => MessageFramer.Create(new CodecOptions(MessageCodec.Resp, MaxMessageBytes: 0), StreamDirection.Response));
        Assert.Throws<ArgumentOutOfRangeException>(() => MessageFramer.Create(new CodecOptions((MessageCodec)99), StreamDirection.Response));
        Assert.Throws<ArgumentOutOfRangeException>(() => MessageFramer.Create(new CodecOptions(MessageCodec.Raw, RawWindowBytes: 0), StreamDirection.Response));
    }
}
