namespace Relay.Echo;

/// <summary>The codecs that set a session's splice points (DESIGN.md "Codecs and splice points").</summary>
internal enum MessageCodec : byte
{
    /// <summary>Every byte offset is a splice point; digests per 4 KiB window.</summary>
    Raw,

    /// <summary>LF-terminated lines (an optional CR before the LF is part of the line).</summary>
    Lines,

    /// <summary>A 2-byte big-endian length, then that many bytes.</summary>
    LengthPrefixed16,

    /// <summary>A 4-byte big-endian length, then that many bytes.</summary>
    LengthPrefixed32,

    /// <summary>Redis RESP2 and RESP3; inline commands on the request side.</summary>
    Resp,
}

/// <summary>Which direction of a session a framer reads; only RESP frames the two differently.</summary>
internal enum StreamDirection : byte
{
    /// <summary>Server to client (the primary's output).</summary>
    Response,

    /// <summary>Client to server (the echo log's input).</summary>
    Request,
}

internal static class CodecDefaults
{
    /// <summary>16 MiB: a pump holds at most one partial message, so this bounds its buffer.</summary>
    public const int MaxMessageBytes = 16 * 1024 * 1024;

    /// <summary>64 KiB, Redis's limit for an inline command (PROTO_INLINE_MAX_SIZE) and a generous line.</summary>
    public const int MaxLineBytes = 64 * 1024;

    /// <summary>Raw digest window: DESIGN.md digests raw streams per 4 KiB.</summary>
    public const int RawWindowBytes = 4096;

    /// <summary>RESP aggregate nesting; real replies nest a handful of levels.</summary>
    public const int MaxNestingDepth = 64;
}

/// <summary>How a framer bounds a message.</summary>
/// <param name="Codec">The codec.</param>
/// <param name="MaxMessageBytes">Largest message, framing included (a line's LF, a length header, RESP's CRLFs).</param>
/// <param name="MaxNestingDepth">RESP only: deepest aggregate nesting.</param>
/// <param name="RawWindowBytes">Raw only: the digest window.</param>
internal sealed record CodecOptions(
    MessageCodec Codec,
    int MaxMessageBytes = CodecDefaults.MaxMessageBytes,
    int MaxNestingDepth = CodecDefaults.MaxNestingDepth,
    int RawWindowBytes = CodecDefaults.RawWindowBytes)
{
    /// <summary>The defaults for a codec: lines get the smaller line limit.</summary>
    public static CodecOptions For(MessageCodec codec) =>
        new(codec, codec == MessageCodec.Lines ? CodecDefaults.MaxLineBytes : CodecDefaults.MaxMessageBytes);

    public void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxMessageBytes, 3, nameof(MaxMessageBytes));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxNestingDepth, 1, nameof(MaxNestingDepth));
        ArgumentOutOfRangeException.ThrowIfLessThan(RawWindowBytes, 1, nameof(RawWindowBytes));
        if (!Enum.IsDefined(Codec))
        {
            throw new ArgumentOutOfRangeException(nameof(Codec), Codec, "unknown codec");
        }
    }
}
