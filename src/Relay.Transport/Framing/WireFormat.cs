using System.Buffers.Binary;

namespace Relay.Transport.Framing;

/// <summary>Packet types of wire version 1 (docs/transport.md section 2).</summary>
public enum PacketType : byte
{
    Data = 1,
    Ack = 2,
    Nack = 3,
    Probe = 4,
    ProbeAck = 5,
    Close = 6,
}

/// <summary>Why a datagram was dropped; each reason has its own counter.</summary>
public enum DropReason
{
    Truncated = 0,
    Oversize = 1,
    WrongVersion = 2,
    Malformed = 3,
    Replayed = 4,
    TooOld = 5,
    AuthFailed = 6,
    Window = 7,
}

/// <summary>The constants and the 12-byte header of docs/transport.md.</summary>
internal static class WireFormat
{
    public const byte Version = 1;
    public const int HeaderBytes = 12;
    public const int TagBytes = 16;
    public const int OverheadBytes = HeaderBytes + TagBytes;
    public const int MinDatagramBytes = OverheadBytes;
    public const int MaxPaths = 16;
    public const int DefaultMaxDatagramBytes = 1452;
    public const int MaxUdpPayloadBytes = 65507;
    public const ulong MaxPacketNumber = (1UL << 62) - 1;
    public const int DataShardHeaderBytes = 8;
    public const int BlockHeaderBytes = 9;
    public const int DropReasonCount = 8;

    public static void WriteHeader(Span<byte> destination, PacketType type, byte path, ulong packetNumber)
    {
        destination[0] = Version;
        destination[1] = (byte)type;
        destination[2] = path;
        destination[3] = 0;
        BinaryPrimitives.WriteUInt64BigEndian(destination.Slice(4, 8), packetNumber);
    }

    /// <summary>Checks 1-3 of the receive order: length, version, type/path/flags. Never throws.</summary>
    public static bool TryParseHeader(ReadOnlySpan<byte> datagram, int maxDatagramBytes, out PacketHeader header, out DropReason reason)
    {
        header = default;
        if (datagram.Length < MinDatagramBytes)
        {
            reason = DropReason.Truncated;
            return false;
        }

        if (datagram.Length > maxDatagramBytes)
        {
            reason = DropReason.Oversize;
            return false;
        }

        if (datagram[0] != Version)
        {
            reason = DropReason.WrongVersion;
            return false;
        }

        var type = datagram[1];
        var path = datagram[2];
        var packetNumber = BinaryPrimitives.ReadUInt64BigEndian(datagram.Slice(4, 8));
        if (type is < (byte)PacketType.Data or > (byte)PacketType.Close || path >= MaxPaths || datagram[3] != 0 || packetNumber > MaxPacketNumber)
        {
            reason = DropReason.Malformed;
            return false;
        }

        header = new PacketHeader((PacketType)type, path, packetNumber);
        reason = default;
        return true;
    }
}

internal readonly record struct PacketHeader(PacketType Type, byte Path, ulong PacketNumber);
