namespace Relay.Echo;

/// <summary>Where a shadow's output stands against the primary's.</summary>
internal enum DigestStatus : byte
{
    /// <summary>The primary has digests the shadow has not produced yet; everything compared matched.</summary>
    Pending,

    /// <summary>Every digest both sides have produced matched, and the shadow is not behind.</summary>
    Match,

    /// <summary>A digest differed; sticky.</summary>
    Diverged,
}

/// <summary>
/// Compares a shadow's output digests with the primary's, index by index, whichever side arrives
/// first: the agent feeds the primary's digests as echo batches bring them and its own backend's as
/// it reads them. Both sides wait in bounded <see cref="DigestLog"/>s; a digest either side has
/// dropped by then is counted as <see cref="Skipped"/>, not as a match. Single-threaded.
/// </summary>
internal sealed class DigestComparer
{
    private readonly DigestLog _primary;
    private readonly DigestLog _shadow;
    private long _next;

    public DigestComparer(int capacity)
    {
        _primary = new DigestLog(capacity);
        _shadow = new DigestLog(capacity);
    }

    /// <summary>The shadow's digest log: attach it to the <see cref="MessageStream"/> reading the shadow's backend.</summary>
    public DigestLog Shadow => _shadow;

    public DigestStatus Status { get; private set; } = DigestStatus.Match;

    /// <summary>Index of the first message whose digests differed, or -1.</summary>
    public long DivergedIndex { get; private set; } = -1;

    /// <summary>The primary's end offset of that message, or -1.</summary>
    public long DivergedOffset { get; private set; } = -1;

    public long Matched { get; private set; }

    public long Skipped { get; private set; }

    /// <summary>Records one of the primary's digests (indices increase; gaps are allowed).</summary>
    public DigestStatus AddPrimary(in DigestEntry entry)
    {
        _primary.TryAppend(entry);
        return Compare();
    }

    /// <summary>Records the shadow's next digest, for callers that do not attach <see cref="Shadow"/> to a stream.</summary>
    public DigestStatus AddShadow(long endOffset, ulong digest)
    {
        _shadow.Append(endOffset, digest);
        return Compare();
    }

    /// <summary>Compares whatever both sides now hold past the last comparison.</summary>
    public DigestStatus Compare()
    {
        if (Status == DigestStatus.Diverged)
        {
            return Status;
        }

        var end = Math.Min(_primary.Count, _shadow.Count);

        // Jump over what either ring has already dropped, so that a gap of any size costs O(1).
        var floor = Math.Min(end, Math.Max(_primary.FirstRetained, _shadow.FirstRetained));
        if (_next < floor)
        {
            Skipped += floor - _next;
            _next = floor;
        }

        for (; _next < end; _next++)
        {
            if (!_primary.TryGet(_next, out var p) || !_shadow.TryGet(_next, out var s))
            {
                Skipped++;
                continue;
            }

            if (p.Digest != s.Digest)
            {
                DivergedIndex = _next;
                DivergedOffset = p.EndOffset;
                Status = DigestStatus.Diverged;
                _next++;
                return Status;
            }

            Matched++;
        }

        Status = _next < _primary.Count ? DigestStatus.Pending : DigestStatus.Match;
        return Status;
    }
}
