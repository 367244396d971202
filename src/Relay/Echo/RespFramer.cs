namespace Relay.Echo;

/// <summary>
/// Frames Redis RESP2 and RESP3 (https://github.com/redis/redis-specification) without
/// materialising values: a byte-at-a-time state machine over headers and a skip over bulk payloads,
/// holding only counters between chunks. A message is one top-level value: a reply on the response
/// side (attributes '|' are a prefix of the reply they annotate, pushes '>' are messages of their
/// own), a command on the request side.
/// </summary>
/// <remarks>
/// The request side frames what redis-server accepts (networking.c, processMultibulkBuffer and
/// processInlineBuffer): a top-level '*' array of '$' bulk strings, or else an inline command up
/// to LF. A request the server answers with nothing (an all-blank inline line, <c>*0</c>,
/// <c>*-1</c>) ends as <see cref="FrameStatus.SeparatorEnd"/> so that message counts on both
/// sides stay paired. RESP3 streamed types (<c>$?</c>, <c>*?</c>) are refused: Redis never sends them.
/// </remarks>
internal sealed class RespFramer : MessageFramer
{
    private enum State : byte
    {
        Type,
        Text,
        Number,
        Null,
        Boolean,
        BooleanCr,
        Lf,
        Bulk,
        BulkCr,
        BulkLf,
        Inline,
    }

    private readonly bool _request;
    private readonly int _maxMessageBytes;
    private readonly long[] _pending;
    private readonly bool[] _attribute;
    private int _depth;
    private State _state;
    private byte _kind;
    private bool _negative;
    private bool _signed;
    private int _digits;
    private long _value;
    private long _remaining;
    private long _messageBytes;
    private bool _inlineContent;

    public RespFramer(StreamDirection direction, int maxMessageBytes, int maxNestingDepth)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxMessageBytes, 3);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxNestingDepth, 1);
        _request = direction == StreamDirection.Request;
        _maxMessageBytes = maxMessageBytes;
        _pending = new long[maxNestingDepth];
        _attribute = new bool[maxNestingDepth];
    }

    protected override FrameStatus AdvanceCore(ReadOnlySpan<byte> data, out int consumed)
    {
        var i = 0;
        while (i < data.Length)
        {
            switch (_state)
            {
                case State.Type:
                {
                    var b = data[i];
                    if (_request)
                    {
                        if (_depth == 0 && b != (byte)'*')
                        {
                            // Anything but '*' at the start of a request is an inline command; its
                            // first byte is content, so do not consume it here.
                            _state = State.Inline;
                            _inlineContent = false;
                            continue;
                        }

                        if (_depth > 0 && b != (byte)'$')
                        {
                            consumed = i;
                            return Fail(FramingError.InvalidRequest);
                        }
                    }

                    i++;
                    _kind = b;
                    switch (b)
                    {
                        case (byte)'+' or (byte)'-' or (byte)',':
                            _state = State.Text;
                            break;
                        case (byte)':' or (byte)'(' or (byte)'$' or (byte)'!' or (byte)'=' or (byte)'*' or (byte)'%' or (byte)'~' or (byte)'|' or (byte)'>':
                            BeginNumber();
                            break;
                        case (byte)'_':
                            _state = State.Null;
                            break;
                        case (byte)'#':
                            _state = State.Boolean;
                            break;
                        default:
                            consumed = i - 1;
                            return Fail(FramingError.InvalidType);
                    }

                    break;
                }

                case State.Text:
                {
                    var end = data[i..].IndexOfAny((byte)'\r', (byte)'\n');
                    if (end < 0)
                    {
                        i = data.Length;
                        break;
                    }

                    i += end;
                    if (data[i] == (byte)'\n')
                    {
                        consumed = i;
                        return Fail(FramingError.InvalidLineEnding);
                    }

                    i++;
                    _state = State.Lf;
                    break;
                }

                case State.Number:
                {
                    // Digits in a local loop: this is most of a header's bytes ("$16\r\n").
                    var digits = _digits;
                    var value = _value;
                    while (i < data.Length && (uint)(data[i] - '0') <= 9)
                    {
                        // Lengths and counts are bounded far below 10^18; values (':' and '(') are
                        // only checked for shape, so stop accumulating where a long would overflow.
                        if (++digits <= 18)
                        {
                            value = (value * 10) + (data[i] - '0');
                        }
                        else if (IsHeader(_kind))
                        {
                            consumed = i;
                            return Fail(FramingError.InvalidLength);
                        }
                        else if (_kind == (byte)':' && digits > 19)
                        {
                            consumed = i;
                            return Fail(FramingError.InvalidNumber);
                        }

                        i++;
                    }

                    _digits = digits;
                    _value = value;
                    if (i == data.Length)
                    {
                        break;
                    }

                    var b = data[i];
                    if (b == (byte)'\r')
                    {
                        if (digits == 0)
                        {
                            consumed = i;
                            return Fail(FramingError.InvalidNumber);
                        }

                        i++;
                        _state = State.Lf;
                    }
                    else if (b == (byte)'\n')
                    {
                        consumed = i;
                        return Fail(FramingError.InvalidLineEnding);
                    }
                    else if (!_signed && digits == 0 && (b == (byte)'-' || (b == (byte)'+' && !IsHeader(_kind))))
                    {
                        _signed = true;
                        _negative = b == (byte)'-';
                        i++;
                    }
                    else if (b == (byte)'?' && !_signed && digits == 0 && IsHeader(_kind))
                    {
                        consumed = i;
                        return Fail(FramingError.StreamedNotSupported);
                    }
                    else
                    {
                        consumed = i;
                        return Fail(FramingError.InvalidNumber);
                    }

                    break;
                }

                case State.Null:
                    if (data[i] != (byte)'\r')
                    {
                        consumed = i;
                        return data[i] == (byte)'\n' ? Fail(FramingError.InvalidLineEnding) : Fail(FramingError.InvalidValue);
                    }

                    i++;
                    _state = State.Lf;
                    break;

                case State.Boolean:
                    if (data[i] is not ((byte)'t' or (byte)'f'))
                    {
                        consumed = i;
                        return Fail(FramingError.InvalidValue);
                    }

                    i++;
                    _state = State.BooleanCr;
                    break;

                case State.BooleanCr:
                    if (data[i] != (byte)'\r')
                    {
                        consumed = i;
                        return data[i] == (byte)'\n' ? Fail(FramingError.InvalidLineEnding) : Fail(FramingError.InvalidValue);
                    }

                    i++;
                    _state = State.Lf;
                    break;

                case State.Lf:
                {
                    if (data[i] != (byte)'\n')
                    {
                        consumed = i;
                        return Fail(FramingError.InvalidLineEnding);
                    }

                    i++;
                    var status = FinishLine(i);
                    if (status != FrameStatus.NeedMore)
                    {
                        return Finish(status, i, out consumed);
                    }

                    break;
                }

                case State.Bulk:
                {
                    var available = data.Length - i;
                    if (available >= _remaining + 2)
                    {
                        // The payload and its CRLF are all here: skip both in one step.
                        i += (int)_remaining;
                        _remaining = 0;
                        if (data[i] != (byte)'\r' || data[i + 1] != (byte)'\n')
                        {
                            consumed = data[i] != (byte)'\r' ? i : i + 1;
                            return Fail(FramingError.MissingTrailer);
                        }

                        i += 2;
                        if (CompleteElement())
                        {
                            return Finish(FrameStatus.MessageEnd, i, out consumed);
                        }

                        break;
                    }

                    if (available < _remaining)
                    {
                        _remaining -= available;
                        i = data.Length;
                        break;
                    }

                    i += (int)_remaining;
                    _remaining = 0;
                    _state = State.BulkCr;
                    break;
                }

                case State.BulkCr:
                    if (data[i] != (byte)'\r')
                    {
                        consumed = i;
                        return Fail(FramingError.MissingTrailer);
                    }

                    i++;
                    _state = State.BulkLf;
                    break;

                case State.BulkLf:
                    if (data[i] != (byte)'\n')
                    {
                        consumed = i;
                        return Fail(FramingError.MissingTrailer);
                    }

                    i++;
                    if (CompleteElement())
                    {
                        return Finish(FrameStatus.MessageEnd, i, out consumed);
                    }

                    break;

                case State.Inline:
                {
                    var rest = data[i..];
                    var lf = rest.IndexOf((byte)'\n');
                    var line = lf < 0 ? rest : rest[..lf];
                    if (!_inlineContent && line.IndexOfAnyExcept(" \t\r\v\f"u8) >= 0)
                    {
                        _inlineContent = true;
                    }

                    if (lf < 0)
                    {
                        i = data.Length;
                        break;
                    }

                    i += lf + 1;
                    _state = State.Type;
                    return Finish(_inlineContent ? FrameStatus.MessageEnd : FrameStatus.SeparatorEnd, i, out consumed);
                }
            }
        }

        consumed = i;
        _messageBytes += i;
        if (_messageBytes > _maxMessageBytes)
        {
            return Fail(FramingError.MessageTooLarge);
        }

        return FrameStatus.NeedMore;
    }

    protected override void ResetCore()
    {
        _depth = 0;
        _state = State.Type;
        _remaining = 0;
        _messageBytes = 0;
        _inlineContent = false;
        BeginNumber();
        _state = State.Type;
    }

    private static bool IsHeader(byte kind) => kind is not ((byte)':' or (byte)'(');

    private void BeginNumber()
    {
        _state = State.Number;
        _negative = false;
        _signed = false;
        _digits = 0;
        _value = 0;
    }

    private FrameStatus Finish(FrameStatus status, int i, out int consumed)
    {
        consumed = i;
        var total = _messageBytes + i;
        _messageBytes = 0;
        return total > _maxMessageBytes ? Fail(FramingError.MessageTooLarge) : status;
    }

    /// <summary>Acts on a complete line; NeedMore means "the message goes on".</summary>
    private FrameStatus FinishLine(int consumedSoFar)
    {
        switch (_kind)
        {
            case (byte)'$' or (byte)'!' or (byte)'=':
            {
                if (_negative)
                {
                    if (_value == 1 && _kind == (byte)'$' && !_request)
                    {
                        return CompleteElement() ? FrameStatus.MessageEnd : FrameStatus.NeedMore; // RESP2 null bulk string
                    }

                    return Fail(FramingError.InvalidLength);
                }

                // Fail before the payload arrives: the pump must not buffer toward a message it
                // will refuse.
                if (_messageBytes + consumedSoFar + _value + 2 > _maxMessageBytes)
                {
                    return Fail(FramingError.MessageTooLarge);
                }

                _remaining = _value;
                _state = _value == 0 ? State.BulkCr : State.Bulk;
                return FrameStatus.NeedMore;
            }

            case (byte)'*' or (byte)'%' or (byte)'~' or (byte)'|' or (byte)'>':
            {
                if (_negative)
                {
                    if (_value != 1 || _kind != (byte)'*')
                    {
                        return Fail(FramingError.InvalidLength);
                    }

                    if (_request)
                    {
                        _state = State.Type;
                        return FrameStatus.SeparatorEnd;
                    }

                    return CompleteElement() ? FrameStatus.MessageEnd : FrameStatus.NeedMore; // RESP2 null array
                }

                if (_value == 0)
                {
                    if (_request)
                    {
                        _state = State.Type;
                        return FrameStatus.SeparatorEnd;
                    }

                    if (_kind == (byte)'|')
                    {
                        _state = State.Type; // an empty attribute annotates the value that follows
                        return FrameStatus.NeedMore;
                    }

                    return CompleteElement() ? FrameStatus.MessageEnd : FrameStatus.NeedMore;
                }

                if (_depth == _pending.Length)
                {
                    return Fail(FramingError.NestingTooDeep);
                }

                var pairs = _kind is (byte)'%' or (byte)'|';
                _pending[_depth] = pairs ? _value * 2 : _value;
                _attribute[_depth] = _kind == (byte)'|';
                _depth++;
                _state = State.Type;
                return FrameStatus.NeedMore;
            }

            default:
                return CompleteElement() ? FrameStatus.MessageEnd : FrameStatus.NeedMore;
        }
    }

    /// <summary>Counts one finished value toward its parents; true when it finished a top-level value.</summary>
    private bool CompleteElement()
    {
        _state = State.Type;
        while (_depth > 0)
        {
            var d = _depth - 1;
            if (--_pending[d] > 0)
            {
                return false;
            }

            _depth--;
            if (_attribute[d])
            {
                // An attribute is not an element of its parent: the value it annotates is.
                return false;
            }
        }

        return true;
    }
}
