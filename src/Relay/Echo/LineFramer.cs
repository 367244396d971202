namespace Relay.Echo;

/// <summary>
/// LF-terminated lines. A CR before the LF needs no special case: it is simply the line's last
/// content byte, and both "a\n" and "a\r\n" end at their LF.
/// </summary>
internal sealed class LineFramer : MessageFramer
{
    private readonly int _maxMessageBytes;
    private long _lineBytes;

    public LineFramer(int maxMessageBytes)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxMessageBytes, 1);
        _maxMessageBytes = maxMessageBytes;
    }

    protected override FrameStatus AdvanceCore(ReadOnlySpan<byte> data, out int consumed)
    {
        // Never look further than the line may still grow: a long chunk without LF fails as soon
        // as the limit is crossed, without scanning the rest.
        var budget = _maxMessageBytes - _lineBytes;
        var window = data.Length <= budget ? data : data[..(int)budget];
        var lf = window.IndexOf((byte)'\n');
        if (lf >= 0)
        {
            _lineBytes = 0;
            consumed = lf + 1;
            return FrameStatus.MessageEnd;
        }

        if (window.Length < data.Length)
        {
            consumed = window.Length;
            return Fail(FramingError.MessageTooLarge);
        }

        _lineBytes += data.Length;
        consumed = data.Length;
        return FrameStatus.NeedMore;
    }

    protected override void ResetCore() => _lineBytes = 0;
}
