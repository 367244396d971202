namespace Relay.Echo;

/// <summary>A 2- or 4-byte big-endian length, then that many bytes; the header is part of the message.</summary>
internal sealed class LengthPrefixedFramer : MessageFramer
{
    private readonly int _headerBytes;
    private readonly int _maxMessageBytes;
    private int _headerFilled;
    private long _length;
    private long _remaining;

    public LengthPrefixedFramer(int headerBytes, int maxMessageBytes)
    {
        if (headerBytes is not (2 or 4))
        {
            throw new ArgumentOutOfRangeException(nameof(headerBytes), headerBytes, "the length header is 2 or 4 bytes");
        }

        ArgumentOutOfRangeException.ThrowIfLessThan(maxMessageBytes, headerBytes);
        _headerBytes = headerBytes;
        _maxMessageBytes = maxMessageBytes;
    }

    protected override FrameStatus AdvanceCore(ReadOnlySpan<byte> data, out int consumed)
    {
        var i = 0;
        while (_headerFilled < _headerBytes)
        {
            if (i == data.Length)
            {
                consumed = i;
                return FrameStatus.NeedMore;
            }

            _length = (_length << 8) | data[i++];
            if (++_headerFilled == _headerBytes)
            {
                if (_length + _headerBytes > _maxMessageBytes)
                {
                    consumed = i;
                    return Fail(FramingError.MessageTooLarge);
                }

                _remaining = _length;
            }
        }

        var available = data.Length - i;
        if (available < _remaining)
        {
            _remaining -= available;
            consumed = data.Length;
            return FrameStatus.NeedMore;
        }

        consumed = i + (int)_remaining;
        ResetCore();
        return FrameStatus.MessageEnd;
    }

    protected override void ResetCore()
    {
        _headerFilled = 0;
        _length = 0;
        _remaining = 0;
    }
}
