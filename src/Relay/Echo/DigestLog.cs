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
/// The ring starts small and doubles, up to <see cref="Capacity"/>, only as entries arrive: an idle
/// session holds a few hundred bytes instead of the whole ring. Growing copies every entry (none has
/// been overwritten yet) into the new array before publishing it, and a reader reads the count
/// before the array, so the array it reads holds every index below that count.
/// </summary>
internal sealed class DigestLog
{
    /// <summary>Entries a new ring holds before it first grows.</summary>
    internal const int InitialSize = 16;

    private static readonly DigestEntry Unset = new(-1, -1, 0);

    private readonly int _capacity;
    private DigestEntry[] _entries;
    private long _count;

    public DigestLog(int capacity)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(capacity, 1 << 24);
        _capacity = (int)BitOperations.RoundUpToPowerOf2((uint)capacity);
        _entries = NewRing(Math.Min(_capacity, InitialSize));
    }

    /// <summary>The most entries the ring keeps.</summary>
    public int Capacity => _capacity;

    /// <summary>Entries the ring has room for now (it grows up to <see cref="Capacity"/>).</summary>
    internal int Allocated => Volatile.Read(ref _entries).Length;

    /// <summary>One past the highest index recorded.</summary>
    public long Count => Volatile.Read(ref _count);

    /// <summary>The lowest index the ring may still hold.</summary>
    public long FirstRetained => Math.Max(0, Count - _capacity + 1);

    /// <summary>Records the next message's digest (index <see cref="Count"/>).</summary>
    public void Append(long endOffset, ulong digest)
    {
        var index = _count;
        var entries = EnsureRoomFor(index);
        entries[index & (entries.Length - 1)] = new DigestEntry(index, endOffset, digest);
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

        var entries = EnsureRoomFor(entry.Index);
        entries[entry.Index & (entries.Length - 1)] = entry;
        Volatile.Write(ref _count, entry.Index + 1);
        return true;
    }

    /// <summary>
    /// The array to write <paramref name="index"/> into, grown first when the index lies past it and
    /// the ring is below its capacity. Before the ring reaches its capacity no entry has wrapped, so
    /// each keeps its place (its index) in the larger array.
    /// </summary>
    private DigestEntry[] EnsureRoomFor(long index)
    {
        var entries = _entries;
        if (index < entries.Length || entries.Length == _capacity)
        {
            return entries;
        }

        var size = (int)Math.Min((ulong)_capacity, BitOperations.RoundUpToPowerOf2((ulong)index + 1));
        var grown = NewRing(size);
        entries.CopyTo(grown, 0);

        Volatile.Write(ref _entries, grown);
        return grown;
    }

    private static DigestEntry[] NewRing(int size)
    {
        var ring = new DigestEntry[size];
        ring.AsSpan().Fill(Unset);
        return ring;
    }

    public bool TryGet(long index, out DigestEntry entry)
    {
        var count = Volatile.Read(ref _count);
        if (index < 0 || index >= count)
        {
            entry = default;
            return false;
        }

        var entries = Volatile.Read(ref _entries);
        entry = entries[index & (entries.Length - 1)];
        Interlocked.MemoryBarrier();
        var after = Volatile.Read(ref _count);
        return entry.Index == index && index >= OldestSafe(entries, after);
    }

    /// <summary>
    /// The lowest index a reader of <paramref name="entries"/> can trust while the count is
    /// <paramref name="count"/>. Only a full-size ring wraps: the writer may be putting index
    /// <c>count</c> into the slot of <c>count - Length</c> now. A smaller one grows before an index
    /// would overwrite another, so everything it was given is still there.
    /// </summary>
    private long OldestSafe(DigestEntry[] entries, long count) =>
        entries.Length < _capacity ? 0 : Math.Max(0, count - entries.Length + 1);

    /// <summary>
    /// Copies retained entries from <paramref name="fromIndex"/> on, for the echo shipper.
    /// Returns how many were copied; entries the ring no longer holds are skipped, so the first
    /// copied index may be above <paramref name="fromIndex"/>.
    /// </summary>
    public int CopyTo(long fromIndex, Span<DigestEntry> destination)
    {
        var count = Volatile.Read(ref _count);
        var entries = Volatile.Read(ref _entries);
        var mask = entries.Length - 1;
        var start = Math.Max(fromIndex, OldestSafe(entries, count));
        var n = (int)Math.Min(destination.Length, Math.Max(0, count - start));
        var written = 0;
        for (var i = 0; i < n; i++)
        {
            var entry = entries[(start + i) & mask];
            if (entry.Index == start + i)
            {
                destination[written++] = entry;
            }
        }

        Interlocked.MemoryBarrier();
        var after = Volatile.Read(ref _count);
        var firstSafe = OldestSafe(entries, after);
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
