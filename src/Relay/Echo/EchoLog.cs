using System.Buffers;

namespace Relay.Echo;

/// <summary>Bounds of one session's echo log.</summary>
/// <param name="RetentionCapBytes">
/// How much input is kept. Below it the log holds everything from offset 0, so a shadow can join
/// at any time; above it the log is trimmed to what every shadow has acked (and, if a shadow lags
/// by more than the cap, to the cap: that shadow is evicted). Memory stays under the cap plus one
/// segment.
/// </param>
/// <param name="SegmentBytes">Size of the pooled segments the log is made of.</param>
/// <param name="MaxShadows">Shadows that can follow the log at once.</param>
internal sealed record EchoLogOptions(
    long RetentionCapBytes = EchoLogOptions.DefaultRetentionCapBytes,
    int SegmentBytes = EchoLogOptions.DefaultSegmentBytes,
    int MaxShadows = EchoLogOptions.DefaultMaxShadows)
{
    /// <summary>4 MiB per session.</summary>
    public const long DefaultRetentionCapBytes = 4 * 1024 * 1024;

    /// <summary>
    /// 16 KiB: a pump's typical read fits in one or two, and ArrayPool.Shared keeps this size per
    /// core. 4 KiB segments cut an idle echoed session's memory by 12 KiB but streamed echo 15-25%
    /// slower through the relay (docs/benchmarks.md, session 13).
    /// </summary>
    public const int DefaultSegmentBytes = 16 * 1024;

    public const int DefaultMaxShadows = 8;

    public void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(SegmentBytes, 256, nameof(SegmentBytes));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(SegmentBytes, 1024 * 1024, nameof(SegmentBytes));
        ArgumentOutOfRangeException.ThrowIfLessThan(RetentionCapBytes, SegmentBytes, nameof(RetentionCapBytes));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxShadows, 1, nameof(MaxShadows));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(MaxShadows, 64, nameof(MaxShadows));
    }
}

/// <summary>
/// A session's client→server input, kept from session start so that shadows can replay it and a
/// TAKEOVER can carry its tail (DESIGN.md "Echo"). Positions are absolute stream offsets; with a
/// request-side <see cref="MessageStream"/> the log also counts messages.
/// </summary>
/// <remarks>
/// One writer (the session's client→server pump) calls <see cref="Append(ReadOnlySpan{byte})"/>;
/// any number of readers (the echo shipper, a takeover) call <see cref="TryRead"/>,
/// <see cref="WriteTo"/>, <see cref="Ack"/> and the shadow methods concurrently. The writer fills
/// the current segment without a lock and publishes <see cref="Length"/> after the bytes are in
/// place; only adding a segment, trimming, and readers' copies take the lock, so a reader never
/// copies from a segment that has gone back to the pool.
/// </remarks>
internal sealed class EchoLog : IDisposable
{
    private const byte Free = 0;
    private const byte Active = 1;
    private const byte Evicted = 2;
    private const int InitialSegmentSlots = 4;

    private readonly Lock _gate = new();
    private readonly ArrayPool<byte> _pool;
    private readonly int _segmentBytes;
    private readonly long _cap;
    private readonly MessageStream? _messages;
    private readonly long[] _acked;
    private readonly byte[] _shadowState;
    // Segment number k (absolute: offset / segment size) lives in slot k & (length - 1), so trimming
    // frees slots without moving the others. The length is a power of two.
    private byte[]?[] _segments;
    private int _segmentCount;
    private long _firstSegment;
    private long _length;
    private string? _noNewShadowsReason;
    private bool _disposed;

    public EchoLog(EchoLogOptions options, MessageStream? messages = null, ArrayPool<byte>? pool = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _pool = pool ?? ArrayPool<byte>.Shared;
        _segmentBytes = options.SegmentBytes;
        _cap = options.RetentionCapBytes;
        _messages = messages;
        _acked = new long[options.MaxShadows];
        _shadowState = new byte[options.MaxShadows];
        // Grown (doubling) as input arrives; the cap bounds it.
        _segments = new byte[]?[InitialSegmentSlots];
    }

    /// <summary>Bytes appended since session start: the log's end offset, <c>inOffset</c>.</summary>
    public long Length => Volatile.Read(ref _length);

    /// <summary>The lowest offset still held.</summary>
    public long Start
    {
        get
        {
            lock (_gate)
            {
                return _firstSegment * _segmentBytes;
            }
        }
    }

    /// <summary>Bytes held now (pooled memory is this rounded up to whole segments).</summary>
    public long RetainedBytes => Length - Start;

    /// <summary>Whole request messages appended (0 without a codec).</summary>
    public long Messages => _messages?.Messages ?? 0;

    /// <summary>The request-side framing, when the route has a codec.</summary>
    public MessageStream? Framing => _messages;

    /// <summary>False once the log has been trimmed: a new shadow could not replay from offset 0.</summary>
    public bool CanAddShadow => Volatile.Read(ref _noNewShadowsReason) is null;

    /// <summary>Why <see cref="CanAddShadow"/> is false, for the API; null while it is true.</summary>
    public string? CannotAddShadowReason => Volatile.Read(ref _noNewShadowsReason);

    /// <summary>
    /// Appends the next client bytes, before they go to the primary. False when the request codec
    /// refuses them (<see cref="Framing"/> says why): the session must end.
    /// </summary>
    public bool Append(ReadOnlySpan<byte> data)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_messages is not null && !_messages.Feed(data))
        {
            return false;
        }

        var length = _length;
        while (!data.IsEmpty)
        {
            var within = (int)(length % _segmentBytes);
            byte[] segment;
            if (within == 0)
            {
                TrimIfOverCap(length);
                segment = AddSegment();
            }
            else
            {
                segment = Slot(_firstSegment + _segmentCount - 1)!;
            }

            var n = Math.Min(_segmentBytes - within, data.Length);
            data[..n].CopyTo(segment.AsSpan(within));
            data = data[n..];
            length += n;
            Volatile.Write(ref _length, length);
        }

        TrimIfOverCap(length);
        return true;
    }

    /// <inheritdoc cref="Append(ReadOnlySpan{byte})"/>
    public bool Append(in ReadOnlySequence<byte> data)
    {
        foreach (var segment in data)
        {
            if (!Append(segment.Span))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>
    /// Copies log bytes from <paramref name="offset"/> on into <paramref name="destination"/>. False
    /// when that offset has been trimmed; <paramref name="copied"/> is 0 at the end of the log.
    /// </summary>
    public bool TryRead(long offset, Span<byte> destination, out int copied)
    {
        lock (_gate)
        {
            var length = Volatile.Read(ref _length);
            ArgumentOutOfRangeException.ThrowIfGreaterThan(offset, length);
            if (offset < _firstSegment * _segmentBytes || _disposed)
            {
                copied = 0;
                return false;
            }

            copied = (int)Math.Min(destination.Length, length - offset);
            CopyLocked(offset, destination[..copied]);
            return true;
        }
    }

    /// <summary>
    /// Writes the log's bytes [<paramref name="from"/>, <paramref name="to"/>) to a buffer writer:
    /// a TAKEOVER's tail, or a late shadow's replay. False when <paramref name="from"/> has been trimmed.
    /// </summary>
    public bool WriteTo(long from, long to, IBufferWriter<byte> writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(from, to);
        lock (_gate)
        {
            ArgumentOutOfRangeException.ThrowIfGreaterThan(to, Volatile.Read(ref _length));
            if (from < _firstSegment * _segmentBytes || _disposed)
            {
                return false;
            }

            while (from < to)
            {
                var span = writer.GetSpan((int)Math.Min(to - from, _segmentBytes));
                var n = (int)Math.Min(span.Length, to - from);
                CopyLocked(from, span[..n]);
                writer.Advance(n);
                from += n;
            }

            return true;
        }
    }

    /// <summary>Registers a shadow that will replay the log from offset 0.</summary>
    public bool TryAddShadow(out int shadowId, out string? reason)
    {
        lock (_gate)
        {
            shadowId = -1;
            reason = _noNewShadowsReason;
            if (reason is not null)
            {
                return false;
            }

            shadowId = Array.IndexOf(_shadowState, Free);
            if (shadowId < 0)
            {
                reason = $"the session already has {_shadowState.Length} shadows";
                return false;
            }

            Volatile.Write(ref _acked[shadowId], 0);
            Volatile.Write(ref _shadowState[shadowId], Active);
            return true;
        }
    }

    public void RemoveShadow(int shadowId)
    {
        lock (_gate)
        {
            _shadowState[shadowId] = Free;
        }
    }

    /// <summary>Records that a shadow has applied the log up to <paramref name="offset"/> (acks never move back).</summary>
    public void Ack(int shadowId, long offset)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(offset, Length);
        ref var acked = ref _acked[shadowId];
        var seen = Volatile.Read(ref acked);
        while (offset > seen)
        {
            var previous = Interlocked.CompareExchange(ref acked, offset, seen);
            if (previous == seen)
            {
                return;
            }

            seen = previous;
        }
    }

    public long Acked(int shadowId) => Volatile.Read(ref _acked[shadowId]);

    /// <summary>The shadow lagged by more than the retention cap and the log no longer holds what it needs.</summary>
    public bool IsEvicted(int shadowId) => Volatile.Read(ref _shadowState[shadowId]) == Evicted;

    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            ReturnOldestLocked(_segmentCount);
        }
    }

    private byte[] AddSegment()
    {
        var segment = _pool.Rent(_segmentBytes);
        lock (_gate)
        {
            if (_segmentCount == _segments.Length)
            {
                // As the log grows towards its cap (which bounds the count, so this settles after a
                // few doublings). Only the writer grows it; readers index the array under the gate.
                var grown = new byte[]?[_segments.Length * 2];
                for (var k = _firstSegment; k < _firstSegment + _segmentCount; k++)
                {
                    grown[k & (grown.Length - 1)] = Slot(k);
                }

                _segments = grown;
            }

            if (_segmentCount == 0)
            {
                _firstSegment = _length / _segmentBytes;
            }

            Slot(_firstSegment + _segmentCount) = segment;
            _segmentCount++;
        }

        return segment;
    }

    private void TrimIfOverCap(long length)
    {
        if (length - (_firstSegment * _segmentBytes) <= _cap)
        {
            return;
        }

        // Trim to what every shadow has acked, but never keep more than the cap: a shadow further
        // behind than that is evicted rather than letting one slow agent grow the relay's memory.
        var target = length;
        for (var i = 0; i < _shadowState.Length; i++)
        {
            if (Volatile.Read(ref _shadowState[i]) == Active)
            {
                target = Math.Min(target, Volatile.Read(ref _acked[i]));
            }
        }

        target = Math.Max(target, length - _cap);
        var targetSegment = target / _segmentBytes;
        var drop = (int)Math.Min(targetSegment - _firstSegment, _segmentCount);
        if (drop <= 0)
        {
            return;
        }

        lock (_gate)
        {
            ReturnOldestLocked(drop);
            _firstSegment = targetSegment;
            var start = targetSegment * _segmentBytes;
            for (var i = 0; i < _shadowState.Length; i++)
            {
                if (_shadowState[i] == Active && Volatile.Read(ref _acked[i]) < start)
                {
                    Volatile.Write(ref _shadowState[i], Evicted);
                }
            }

            _noNewShadowsReason ??= $"the echo log passed its retention cap of {_cap} bytes and was trimmed at offset {start}; a new shadow needs the log from offset 0";
        }
    }

    private ref byte[]? Slot(long segmentNumber) => ref _segments[segmentNumber & (_segments.Length - 1)];

    /// <summary>Gives the oldest <paramref name="count"/> segments back to the pool (the caller moves <see cref="_firstSegment"/>).</summary>
    private void ReturnOldestLocked(int count)
    {
        for (var i = 0; i < count; i++)
        {
            ref var slot = ref Slot(_firstSegment + i);
            _pool.Return(slot!);
            slot = null;
        }

        _segmentCount -= count;
    }

    private void CopyLocked(long offset, Span<byte> destination)
    {
        while (!destination.IsEmpty)
        {
            var within = (int)(offset % _segmentBytes);
            var n = Math.Min(_segmentBytes - within, destination.Length);
            Slot(offset / _segmentBytes).AsSpan(within, n).CopyTo(destination);
            destination = destination[n..];
            offset += n;
        }
    }
}
