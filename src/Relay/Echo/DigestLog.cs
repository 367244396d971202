using System.Numerics;

namespace Relay.Echo;

/// <summary>The digest of one message (or raw window) of a stream.</summary>
/// <param name="Index">The message's number in the stream, from 0 at session start.</param>
/// <param name="EndOffset">The stream offset just past the message.</param>
/// <param name="Digest">XxHash3 (64-bit) of the message's bytes.</param>
internal readonly record struct DigestEntry(long Index, long EndOffset, ulong Digest);

/// <summary>How one digest compared.</summary>
internal enum DigestMatch : byte
{
    /// <summary>Both sides have the message and its digests are equal.</summary>
    Match,

    /// <summary>Both sides have the message and its digests differ.</summary>
    Diverged,

    /// <summary>This log has not recorded the message yet.</summary>
    Pending,

    /// <summary>This log recorded the message but no longer holds it (or never received it).</summary>
    Unavailable,
}

/// <summary>
/// The last <see cref="Capacity"/> digests of a stream, in a ring: what the relay records for the
/// primary's output and ships to the shadows, and what an agent records for its backend's output.
/// One writer appends; readers on other threads may call <see cref="TryGet"/> and
/// <see cref="CopyTo"/> concurrently (a reader re-checks the count after reading, the way a seqlock
/// does, and treats an entry the writer may have overwritten meanwhile as unavailable).
/// </summary>
internal sealed class DigestLog
{
    private readonly DigestEntry[] _entries;
    private readonly long _mask;
    private long _count;

    public DigestLog(int capacity)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(capacity, 1 << 24);
        var size = (int)BitOperations.RoundUpToPowerOf2((uint)capacity);
        _entries = new DigestEntry[size];
        _entries.AsSpan().Fill(new DigestEntry(-1, -1, 0));
        _mask = size - 1;
    }

    public int Capacity => _entries.Length;

    /// <summary>One past the highest index recorded.</summary>
    public long Count => Volatile.Read(ref _count);

    /// <summary>The lowest index the ring may still hold.</summary>
    public long FirstRetained => Math.Max(0, Count - _entries.Length + 1);

    /// <summary>Records the next message's digest (index <see cref="Count"/>).</summary>
    public void Append(long endOffset, ulong digest)
    {
        var index = _count;
        _entries[index & _mask] = new DigestEntry(index, endOffset, digest);
        Volatile.Write(ref _count, index + 1);
    }

    /// <summary>
    /// Records a digest received from elsewhere (an agent receiving the primary's digests). Indices
    /// must increase; a gap leaves the skipped messages unavailable. A writer that leaves gaps must
    /// not have concurrent readers.
    /// </summary>
    public bool TryAppend(in DigestEntry entry)
    {
        if (entry.Index < _count)
        {
            return false;
        }

        _entries[entry.Index & _mask] = entry;
        Volatile.Write(ref _count, entry.Index + 1);
        return true;
    }

    public bool TryGet(long index, out DigestEntry entry)
    {
        var count = Volatile.Read(ref _count);
        if (index < 0 || index >= count)
        {
            entry = default;
            return false;
        }

        entry = _entries[index & _mask];
        Interlocked.MemoryBarrier();
        var after = Volatile.Read(ref _count);
        return entry.Index == index && index > after - _entries.Length;
    }

    /// <summary>
    /// Copies retained entries from <paramref name="fromIndex"/> on, for the echo shipper.
    /// Returns how many were copied; entries the ring no longer holds are skipped, so the first
    /// copied index may be above <paramref name="fromIndex"/>.
    /// </summary>
    public int CopyTo(long fromIndex, Span<DigestEntry> destination)
    {
        var count = Volatile.Read(ref _count);
        var start = Math.Max(fromIndex, Math.Max(0, count - _entries.Length + 1));
        var n = (int)Math.Min(destination.Length, Math.Max(0, count - start));
        var written = 0;
        for (var i = 0; i < n; i++)
        {
            var entry = _entries[(start + i) & _mask];
            if (entry.Index == start + i)
            {
                destination[written++] = entry;
            }
        }

        Interlocked.MemoryBarrier();
        var after = Volatile.Read(ref _count);
        var firstSafe = after - _entries.Length + 1;
        if (written > 0 && destination[0].Index < firstSafe)
        {
            // The writer lapped part of what we read: keep only what it cannot have touched.
            var keep = 0;
            for (var i = 0; i < written; i++)
            {
                if (destination[i].Index >= firstSafe)
                {
                    destination[keep++] = destination[i];
                }
            }

            written = keep;
        }

        return written;
    }

    /// <summary>Compares a digest from the other side against this log.</summary>
    public DigestMatch Compare(in DigestEntry other)
    {
        if (other.Index >= Count)
        {
            return DigestMatch.Pending;
        }

        if (!TryGet(other.Index, out var mine))
        {
            return DigestMatch.Unavailable;
        }

        return mine.Digest == other.Digest ? DigestMatch.Match : DigestMatch.Diverged;
    }
}
