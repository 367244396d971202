using System.Buffers;
using System.IO.Hashing;

namespace Relay.Echo;

/// <summary>
/// One direction of a session as a codec sees it: the pump feeds every byte it reads, in whatever
/// chunks the socket gave it, and learns how many whole messages have passed, where the last one
/// ended (the last splice point) and, with a <see cref="DigestLog"/>, the XxHash3 digest of each
/// message (or raw window). Single-threaded, like the pump that owns it; allocates nothing per call.
/// </summary>
internal sealed class MessageStream
{
    private readonly MessageFramer _framer;
    private readonly DigestLog? _digests;
    private readonly XxHash3? _hash;

    public MessageStream(MessageFramer framer, DigestLog? digests = null)
    {
        ArgumentNullException.ThrowIfNull(framer);
        _framer = framer;
        _digests = digests;
        _hash = digests is null ? null : new XxHash3();
    }

    /// <summary>Bytes fed so far: the stream's absolute offset.</summary>
    public long BytesFed { get; private set; }

    /// <summary>Whole messages so far (raw: whole digest windows).</summary>
    public long Messages { get; private set; }

    /// <summary>RESP requests that the server answers with nothing (see <see cref="FrameStatus.SeparatorEnd"/>).</summary>
    public long Separators { get; private set; }

    /// <summary>Absolute offset just past the last whole message or separator.</summary>
    public long LastBoundary { get; private set; }

    /// <summary>
    /// The last offset at which a shadow can take the stream over: <see cref="BytesFed"/> for raw,
    /// <see cref="LastBoundary"/> for message codecs. A response pump forwards up to here and holds
    /// the rest (at most one partial message, bounded by the codec's maximum).
    /// </summary>
    public long SplicePoint => _framer.EveryByteIsSplicePoint ? BytesFed : LastBoundary;

    public FramingError Error => _framer.Error;

    /// <summary>Absolute offset of the byte the codec refused (or where the size limit was crossed).</summary>
    public long ErrorOffset { get; private set; } = -1;

    public DigestLog? Digests => _digests;

    /// <summary>Feeds the next bytes of the stream; false once the stream is malformed.</summary>
    public bool Feed(ReadOnlySpan<byte> data)
    {
        while (true)
        {
            var status = _framer.Advance(data, out var consumed);
            _hash?.Append(data[..consumed]);
            BytesFed += consumed;
            switch (status)
            {
                case FrameStatus.NeedMore:
                    return true;
                case FrameStatus.MessageEnd:
                    Messages++;
                    LastBoundary = BytesFed;
                    if (_hash is not null)
                    {
                        _digests!.Append(BytesFed, _hash.GetCurrentHashAsUInt64());
                        _hash.Reset();
                    }

                    break;
                case FrameStatus.SeparatorEnd:
                    Separators++;
                    LastBoundary = BytesFed;
                    _hash?.Reset();
                    break;
                default:
                    if (ErrorOffset < 0)
                    {
                        ErrorOffset = BytesFed;
                    }

                    return false;
            }

            data = data[consumed..];
            if (data.IsEmpty)
            {
                return true;
            }
        }
    }

    /// <summary>
    /// After a splice: forgets the partial message the dead host had sent past the last splice
    /// point, so that the stream goes on at <see cref="SplicePoint"/> with the new host's bytes.
    /// Counts and digest indices carry on. With raw there is nothing to forget.
    /// </summary>
    public void RewindToSplicePoint()
    {
        if (_framer.EveryByteIsSplicePoint || BytesFed == LastBoundary)
        {
            return;
        }

        _framer.Reset();
        _hash?.Reset();
        BytesFed = LastBoundary;
        ErrorOffset = -1;
    }

    /// <summary>
    /// The response pump's step over a <c>PipeReader</c> buffer that starts at stream offset
    /// <paramref name="bufferStart"/> (the pump's <c>delivered</c>) and may repeat bytes already fed
    /// (the held partial message): feeds only the new bytes, and returns in <paramref name="whole"/>
    /// the prefix that ends at the last splice point, which is what may go to the client. The pump
    /// then calls <c>AdvanceTo(whole.End, buffer.End)</c>.
    /// </summary>
    public bool FeedBuffered(in ReadOnlySequence<byte> buffer, long bufferStart, out ReadOnlySequence<byte> whole)
    {
        var seen = BytesFed - bufferStart;
        if (bufferStart < 0 || seen < 0 || seen > buffer.Length || SplicePoint < bufferStart)
        {
            throw new ArgumentOutOfRangeException(nameof(bufferStart), bufferStart, "the buffer must start at or before the stream's last splice point and reach at least the bytes already fed");
        }

        var ok = Feed(buffer.Slice(seen));
        whole = buffer.Slice(0, SplicePoint - bufferStart);
        return ok;
    }

    /// <inheritdoc cref="Feed(ReadOnlySpan{byte})"/>
    public bool Feed(in ReadOnlySequence<byte> data)
    {
        if (data.IsSingleSegment)
        {
            return Feed(data.FirstSpan);
        }

        foreach (var segment in data)
        {
            if (!Feed(segment.Span))
            {
                return false;
            }
        }

        return true;
    }
}
