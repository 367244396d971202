namespace Relay.Transport.Multipath;

/// <summary>A block the sender keeps until the receiver has acknowledged it.</summary>
internal sealed class SentBlock
{
    public long Id = -1;
    public int K;
    public int M;
    public int ShardBytes;
    public byte[]? Buffer;
    public bool InFlight;
    public long FirstSentTicks;
    public long LastSentTicks;
    public int Retries;
    public bool HeldKnown;
    public readonly bool[] Held = new bool[255];
}

/// <summary>A block the receiver is assembling, or has decoded and not yet handed to the application.</summary>
internal sealed class ReceivedBlock
{
    public long Id = -1;
    public int K;
    public int M;
    public int ShardBytes;
    public byte[]? Buffer;
    public readonly bool[] Present = new bool[255];
    public int Count;
    public bool Decoded;
    public long LastShardTicks;
    public long LastNackTicks;

    // Decoded batch: frames laid out as length u16 | bytes.
    public byte[]? RawOwner;
    public int RawOffset;
    public int RawLength;
    public int ReadOffset;
}
