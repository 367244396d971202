namespace Relay.Echo;

/// <summary>
/// Raw bytes: any offset is a splice point. Its "messages" are the fixed digest windows
/// [k·W, (k+1)·W) of the stream, so both hosts cut the stream at the same offsets however it
/// arrives.
/// </summary>
internal sealed class RawFramer : MessageFramer
{
    private readonly int _windowBytes;
    private int _filled;

    public RawFramer(int windowBytes)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(windowBytes, 1);
        _windowBytes = windowBytes;
    }

    public override bool EveryByteIsSplicePoint => true;

    protected override FrameStatus AdvanceCore(ReadOnlySpan<byte> data, out int consumed)
    {
        var room = _windowBytes - _filled;
        if (data.Length < room)
        {
            _filled += data.Length;
            consumed = data.Length;
            return FrameStatus.NeedMore;
        }

        _filled = 0;
        consumed = room;
        return FrameStatus.MessageEnd;
    }

    protected override void ResetCore() => _filled = 0;
}
