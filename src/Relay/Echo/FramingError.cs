namespace Relay.Echo;

/// <summary>Why a codec refused a byte stream. Once a framer reports one it stays failed.</summary>
internal enum FramingError : byte
{
    None,

    /// <summary>A message grew past the codec's <see cref="CodecOptions.MaxMessageBytes"/>.</summary>
    MessageTooLarge,

    /// <summary>A RESP value started with a byte that is not a RESP type.</summary>
    InvalidType,

    /// <summary>A line ended in a bare LF, or a CR was not followed by LF, where CRLF is required.</summary>
    InvalidLineEnding,

    /// <summary>A RESP integer, big number or length header is not a decimal number of the allowed range.</summary>
    InvalidNumber,

    /// <summary>A RESP length or count is negative (other than the RESP2 null -1) or out of range.</summary>
    InvalidLength,

    /// <summary>A RESP3 null ('_') carried content, or a boolean ('#') was not 't' or 'f'.</summary>
    InvalidValue,

    /// <summary>A RESP bulk payload was not followed by CRLF.</summary>
    MissingTrailer,

    /// <summary>RESP aggregates nested deeper than <see cref="CodecOptions.MaxNestingDepth"/>.</summary>
    NestingTooDeep,

    /// <summary>RESP3 streamed strings and aggregates ('?' lengths) are not supported.</summary>
    StreamedNotSupported,

    /// <summary>A request array held something other than bulk strings (Redis refuses the same).</summary>
    InvalidRequest,
}

internal static class FramingErrorText
{
    /// <summary>A sentence for logs and the API; constant strings, so reporting allocates nothing.</summary>
    public static string Describe(FramingError error) => error switch
    {
        FramingError.None => "no error",
        FramingError.MessageTooLarge => "a message is larger than the codec's maximum message size",
        FramingError.InvalidType => "a RESP value starts with an unknown type byte",
        FramingError.InvalidLineEnding => "a line is not terminated by CRLF",
        FramingError.InvalidNumber => "a RESP integer or length is not a valid decimal number",
        FramingError.InvalidLength => "a RESP length or count is negative or out of range",
        FramingError.InvalidValue => "a RESP null or boolean carries an invalid value",
        FramingError.MissingTrailer => "a RESP bulk payload is not followed by CRLF",
        FramingError.NestingTooDeep => "RESP aggregates are nested deeper than the codec allows",
        FramingError.StreamedNotSupported => "RESP3 streamed strings and aggregates are not supported",
        FramingError.InvalidRequest => "a RESP request array holds something other than bulk strings",
        _ => "unknown framing error",
    };
}
