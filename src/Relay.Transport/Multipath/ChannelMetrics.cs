using Relay.Transport.Framing;

namespace Relay.Transport.Multipath;

/// <summary>Per-path figures of a <see cref="MultipathChannel"/> at one moment.</summary>
public readonly record struct PathMetrics(
    int Path,
    bool Alive,
    long PacketsSent,
    long BytesSent,
    long PacketsReceived,
    long BytesReceived,
    double SrttMs,
    double JitterMs,
    double LossRate,
    double LossForecast,
    double Share);

/// <summary>Counters of a <see cref="MultipathChannel"/> at one moment.</summary>
public sealed record ChannelMetrics(
    long FramesSent,
    long FramesReceived,
    long BlocksSent,
    long BlocksDecoded,
    long FecRecoveredShards,
    long RetransmittedShards,
    long BlocksRepaired,
    long DuplicateShards,
    IReadOnlyDictionary<DropReason, long> Drops,
    int CurrentDataShards,
    int CurrentParityShards,
    IReadOnlyList<PathMetrics> Paths)
{
    public long TotalDrops => Drops.Values.Sum();
}

/// <summary>Mutable counters; written under the channel's locks or with Interlocked, read racily for snapshots.</summary>
internal sealed class ChannelCounters
{
    public long FramesSent;
    public long FramesReceived;
    public long BlocksSent;
    public long BlocksDecoded;
    public long FecRecoveredShards;
    public long RetransmittedShards;
    public long BlocksRepaired;
    public long DuplicateShards;
    public int CurrentK;
    public int CurrentM;
    public readonly long[] Drops = new long[WireFormat.DropReasonCount];

    public void Drop(DropReason reason) => Interlocked.Increment(ref Drops[(int)reason]);
}
