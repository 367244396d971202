namespace Relay.Echo;

/// <summary>What one <see cref="MessageFramer.Advance"/> call ended on.</summary>
internal enum FrameStatus : byte
{
    /// <summary>All the bytes were consumed and the current message is not complete yet.</summary>
    NeedMore,

    /// <summary>The consumed bytes end a message.</summary>
    MessageEnd,

    /// <summary>
    /// The consumed bytes end something that is a splice point but not a message: a RESP request
    /// the server answers with nothing (an empty inline line, <c>*0</c>, <c>*-1</c>).
    /// </summary>
    SeparatorEnd,

    /// <summary>The stream is malformed; <see cref="MessageFramer.Error"/> says how.</summary>
    Error,
}

/// <summary>
/// An incremental splitter of one direction of a session into messages. It is fed the stream in
/// arbitrary chunks, keeps only a few counters of state between them, and never copies or buffers
/// message bytes, so it allocates nothing after construction.
/// </summary>
internal abstract class MessageFramer
{
    public FramingError Error { get; private set; }

    /// <summary>True for raw: every byte offset is a splice point and a "message" is a digest window.</summary>
    public virtual bool EveryByteIsSplicePoint => false;

    /// <summary>
    /// Consumes a prefix of <paramref name="data"/>: all of it (<see cref="FrameStatus.NeedMore"/>),
    /// or up to and including the last byte of one message (<see cref="FrameStatus.MessageEnd"/> or
    /// <see cref="FrameStatus.SeparatorEnd"/>); the caller calls again with the rest. On
    /// <see cref="FrameStatus.Error"/>, <paramref name="consumed"/> counts the bytes before the fault.
    /// </summary>
    public FrameStatus Advance(ReadOnlySpan<byte> data, out int consumed)
    {
        if (Error != FramingError.None)
        {
            consumed = 0;
            return FrameStatus.Error;
        }

        return AdvanceCore(data, out consumed);
    }

    /// <summary>Forgets any partial message and error, for a new stream.</summary>
    public void Reset()
    {
        Error = FramingError.None;
        ResetCore();
    }

    protected abstract FrameStatus AdvanceCore(ReadOnlySpan<byte> data, out int consumed);

    protected abstract void ResetCore();

    protected FrameStatus Fail(FramingError error)
    {
        Error = error;
        return FrameStatus.Error;
    }

    public static MessageFramer Create(CodecOptions options, StreamDirection direction)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        return options.Codec switch
        {
            MessageCodec.Raw => new RawFramer(options.RawWindowBytes),
            MessageCodec.Lines => new LineFramer(options.MaxMessageBytes),
            MessageCodec.LengthPrefixed16 => new LengthPrefixedFramer(2, options.MaxMessageBytes),
            MessageCodec.LengthPrefixed32 => new LengthPrefixedFramer(4, options.MaxMessageBytes),
            MessageCodec.Resp => new RespFramer(direction, options.MaxMessageBytes, options.MaxNestingDepth),
            _ => throw new ArgumentOutOfRangeException(nameof(options), options.Codec, "unknown codec"),
        };
    }
}
