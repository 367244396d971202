using Relay.Transport.Crypto;
using Relay.Transport.Framing;

namespace Relay.Transport.Multipath;

/// <summary>Options of a <see cref="MultipathChannel"/>. Both peers must use the same wire-relevant values.</summary>
public sealed class MultipathChannelOptions
{
    /// <remarks>Defaults to AES-256-GCM. Both peers must agree.</remarks>
    public AeadAlgorithm Aead { get; set; } = AeadAlgorithm.Aes256Gcm;

    /// <remarks>Defaults to 1452 (1500-byte MTU minus IPv6 and UDP headers). At most 65,507.</remarks>
    public int MaxDatagramBytes { get; set; } = WireFormat.DefaultMaxDatagramBytes;

    /// <remarks>Largest k of a block. Defaults to 16.</remarks>
    public int MaxDataShards { get; set; } = 16;

    /// <remarks>Floor of the adaptive parity count. Defaults to 1.</remarks>
    public int MinParityShards { get; set; } = 1;

    /// <remarks>Cap of the adaptive parity count. Defaults to 8.</remarks>
    public int MaxParityShards { get; set; } = 8;

    /// <remarks>
    /// Whether parity is raised so that a block survives the loss of a whole path (one path's share of
    /// a block at most m shards) when several paths are live. Defaults to
    /// <see cref="PathLossParity.AfterPathFailure"/>: sized by measured loss alone until a path has
    /// died, then raised for <see cref="PathFailureMemory"/>.
    /// </remarks>
    public PathLossParity PathLossParity { get; set; } = PathLossParity.AfterPathFailure;

    /// <remarks>
    /// How long a path must stay dead, while another path answers probes, to count as a path failure
    /// for <see cref="PathLossParity.AfterPathFailure"/>: shorter silences are a busy peer or host,
    /// not a failed path. Defaults to 1 s.
    /// </remarks>
    public TimeSpan PathFailureConfirmation { get; set; } = TimeSpan.FromSeconds(1);

    /// <remarks>How long <see cref="PathLossParity.AfterPathFailure"/> keeps the raised parity after a path died. Defaults to 10 minutes.</remarks>
    public TimeSpan PathFailureMemory { get; set; } = TimeSpan.FromMinutes(10);

    /// <remarks>Target probability that a block cannot be decoded without repair. Defaults to 1e-3.</remarks>
    public double TargetBlockFailure { get; set; } = 1e-3;

    /// <remarks>Loss rate assumed at least, before and between measurements. Defaults to 1%.</remarks>
    public double MinAssumedLoss { get; set; } = 0.01;

    /// <remarks>Defaults to 8 KiB; at most 65,535 and at most what one block holds.</remarks>
    public int MaxFrameBytes { get; set; } = 8192;

    /// <remarks>Blocks sent and not yet acknowledged before <c>SendAsync</c> waits. Defaults to 256.</remarks>
    public int SendWindowBlocks { get; set; } = 256;

    /// <remarks>Blocks the receiver buffers ahead of the application. Defaults to 256.</remarks>
    public int ReceiveWindowBlocks { get; set; } = 256;

    /// <remarks>How long a partly filled block waits for more frames. Defaults to 1 ms.</remarks>
    public TimeSpan FlushDelay { get; set; } = TimeSpan.FromMilliseconds(1);

    /// <remarks>Defaults to 50 ms.</remarks>
    public TimeSpan ProbeInterval { get; set; } = TimeSpan.FromMilliseconds(50);

    /// <remarks>A path with no probe answer for max(3 x SRTT, this) is dead. Defaults to 150 ms.</remarks>
    public TimeSpan DeadAfter { get; set; } = TimeSpan.FromMilliseconds(150);

    /// <remarks>Defaults to 10 ms.</remarks>
    public TimeSpan MinRto { get; set; } = TimeSpan.FromMilliseconds(10);

    /// <remarks>Defaults to 1 s.</remarks>
    public TimeSpan MaxRto { get; set; } = TimeSpan.FromSeconds(1);

    /// <remarks>Period of the timer that sends probes, NACKs and retransmissions. Defaults to 2 ms.</remarks>
    public TimeSpan TickInterval { get; set; } = TimeSpan.FromMilliseconds(2);

    /// <remarks>Pacing rate per path in bytes per second; 0 paces nothing. Defaults to 0.</remarks>
    public long PathRateBytesPerSecond { get; set; }

    /// <remarks>
    /// Turn on Linux UDP GSO (UDP_SEGMENT) on <see cref="Sockets.UdpDatagramSocket"/> paths so that a
    /// block's shards for one path leave in one system call; ignored where unsupported. Defaults to false.
    /// </remarks>
    public bool UseGso { get; set; }

    /// <remarks>
    /// Turn on Linux UDP GRO on <see cref="Sockets.UdpDatagramSocket"/> paths: receives may carry
    /// several datagrams, split by the segment size the kernel reports. Defaults to false.
    /// </remarks>
    public bool UseGro { get; set; }

    /// <remarks>LZ4 on frame batches (kept only when smaller). Defaults to true.</remarks>
    public bool EnableCompression { get; set; } = true;

    /// <remarks>
    /// Meter factory for the "Relay.Transport" meter; null creates a private meter. Each channel's
    /// instruments carry the tag relay.transport.channel = <see cref="ChannelName"/>.
    /// </remarks>
    public System.Diagnostics.Metrics.IMeterFactory? MeterFactory { get; set; }

    /// <remarks>Name used in metrics tags. Defaults to "channel".</remarks>
    public string ChannelName { get; set; } = "channel";

    internal int ShardBytes => MaxDatagramBytes - WireFormat.OverheadBytes - WireFormat.DataShardHeaderBytes;

    internal int MaxBatchBytes => (MaxDataShards * ShardBytes) - WireFormat.BlockHeaderBytes;

    /// <summary>Checks every option and throws one <see cref="ArgumentException"/> naming all problems.</summary>
    public void Validate(string argumentName = "options")
    {
        var errors = new List<string>();
        if (MaxDatagramBytes is < 128 or > WireFormat.MaxUdpPayloadBytes)
        {
            errors.Add($"{nameof(MaxDatagramBytes)} must be in [128, {WireFormat.MaxUdpPayloadBytes}].");
        }

        if (MaxDataShards < 1 || MinParityShards < 0 || MaxParityShards < MinParityShards || MaxDataShards + MaxParityShards > 255)
        {
            errors.Add("Shard counts need 1 <= MaxDataShards, 0 <= MinParityShards <= MaxParityShards, MaxDataShards + MaxParityShards <= 255.");
        }

        if (MaxFrameBytes is < 1 or > 65535 || MaxFrameBytes + 2 > MaxBatchBytes)
        {
            errors.Add($"{nameof(MaxFrameBytes)} must be in [1, 65535] and fit one block ({MaxBatchBytes - 2} bytes).");
        }

        if (SendWindowBlocks < 1 || ReceiveWindowBlocks < 1)
        {
            errors.Add("Window sizes must be positive.");
        }

        if (TargetBlockFailure is <= 0 or >= 1)
        {
            errors.Add($"{nameof(TargetBlockFailure)} must be in (0, 1).");
        }

        if (!Enum.IsDefined(PathLossParity) || PathFailureMemory < TimeSpan.Zero || PathFailureConfirmation < TimeSpan.Zero)
        {
            errors.Add($"{nameof(PathLossParity)} must be Always, AfterPathFailure or Never, and {nameof(PathFailureMemory)} and {nameof(PathFailureConfirmation)} not negative.");
        }

        if (TickInterval <= TimeSpan.Zero || ProbeInterval <= TimeSpan.Zero || MinRto <= TimeSpan.Zero || MaxRto < MinRto)
        {
            errors.Add("Intervals must be positive and MaxRto >= MinRto.");
        }

        if (errors.Count > 0)
        {
            throw new ArgumentException(string.Join(" ", errors), argumentName);
        }
    }
}

/// <summary>How a <see cref="MultipathChannel"/> sizes parity against losing a whole path.</summary>
public enum PathLossParity
{
    /// <summary>Parity is sized by the measured loss only; a dead path's shards are repaired by NACK and retransmission.</summary>
    Never = 0,

    /// <summary>Every block survives the loss of one path where the parity cap allows (costs about 1/paths of the data in parity).</summary>
    Always = 1,

    /// <summary>Like <see cref="Never"/> until a path dies, then like <see cref="Always"/> for <see cref="MultipathChannelOptions.PathFailureMemory"/>.</summary>
    AfterPathFailure = 2,
}
