using System.Buffers.Binary;
using System.Net;
using System.Text;

namespace Relay.Echo;

/// <summary>
/// Message types between a relay and an agent (docs/echo.md, "Wire messages"). Control messages
/// travel sealed over a <c>ControlChannel</c> (TCP); echo frames travel over the
/// <c>MultipathChannel</c> (UDP) that the control connection keyed.
/// </summary>
internal enum EchoMessageType : byte
{
    // Control connection, relay -> agent.
    Hello = 1,
    Takeover = 2,
    TakeoverTail = 3,
    TakeoverPrepare = 4,

    // Control connection, agent -> relay.
    HelloOk = 16,
    Refused = 17,
    TakeoverOk = 18,
    Heartbeat = 19,
    TakeoverPrepared = 20,

    // Echo channel, relay -> agent.
    Open = 32,
    Data = 33,
    Digests = 34,
    Close = 35,

    // Echo channel, agent -> relay.
    Ack = 48,
    ShadowFailed = 49,
}

/// <summary>What a control connection is for, stated in its <see cref="EchoMessageType.Hello"/>.</summary>
internal enum ConnectionPurpose : byte
{
    /// <summary>The long-lived connection that keys the echo channel and carries heartbeats.</summary>
    Echo = 0,

    /// <summary>A pre-opened connection that waits for one TAKEOVER and then carries that session's bytes.</summary>
    Takeover = 1,
}

/// <summary>The shadow's state as an agent reports it in an ack (the relay's tracker adds Lost).</summary>
internal readonly record struct AckFrame(long SessionId, long Applied, long ShadowMessages, DigestStatus Status, long DivergedIndex, bool BackendClosed);

internal readonly record struct OpenFrame(long SessionId, MessageCodec Codec, int MaxMessageBytes);

internal readonly record struct TakeoverRequest(long RelayId, long SessionId, long InOffset, long Delivered, bool DeliveredIsMessages, long TailStart, long TailLength);

internal readonly record struct HelloRequest(int Version, long RelayId, ConnectionPurpose Purpose, IReadOnlyList<IPEndPoint> RelayPaths);

internal readonly record struct HelloAnswer(string AgentId, IReadOnlyList<IPEndPoint> AgentPaths);

/// <summary>An agent's heartbeat: host CPU busy %, host memory in use and its total (0 when unknown), live spliced and shadow sessions.</summary>
internal readonly record struct HeartbeatFrame(double CpuPercent, long MemoryBytes, int Sessions, int ShadowSessions, long MemoryTotalBytes = 0);

/// <summary>
/// Encodes and parses the relay-agent messages. Every field is big-endian. A parse never throws on
/// bad input: it returns false, and the caller drops and counts the message.
/// </summary>
internal static class EchoWire
{
    public const int Version = 1;

    /// <summary>Frame header of a <see cref="EchoMessageType.Data"/> frame: type, session, offset.</summary>
    public const int DataHeaderBytes = 1 + 8 + 8;

    /// <summary>One digest entry on the wire: index, end offset, digest.</summary>
    public const int DigestEntryBytes = 24;

    /// <summary>Header of a <see cref="EchoMessageType.Digests"/> frame: type, session, delivered, count.</summary>
    public const int DigestsHeaderBytes = 1 + 8 + 8 + 2;

    public const int AckBytes = 1 + 8 + 8 + 8 + 1 + 8 + 1;

    public const int OpenBytes = 1 + 8 + 1 + 4;

    public const int CloseBytes = 1 + 8;

    /// <summary>Largest tail chunk in one <see cref="EchoMessageType.TakeoverTail"/> control message.</summary>
    public const int MaxTailChunkBytes = 256 * 1024;

    public static EchoMessageType TypeOf(ReadOnlySpan<byte> message) => message.IsEmpty ? 0 : (EchoMessageType)message[0];

    // ---- echo channel frames ----

    public static int WriteOpen(Span<byte> destination, in OpenFrame frame)
    {
        destination[0] = (byte)EchoMessageType.Open;
        BinaryPrimitives.WriteInt64BigEndian(destination[1..], frame.SessionId);
        destination[9] = (byte)frame.Codec;
        BinaryPrimitives.WriteInt32BigEndian(destination[10..], frame.MaxMessageBytes);
        return OpenBytes;
    }

    public static bool TryReadOpen(ReadOnlySpan<byte> frame, out OpenFrame open)
    {
        open = default;
        if (frame.Length != OpenBytes || frame[0] != (byte)EchoMessageType.Open || !Enum.IsDefined((MessageCodec)frame[9]))
        {
            return false;
        }

        var max = BinaryPrimitives.ReadInt32BigEndian(frame[10..]);
        if (max < 3)
        {
            return false;
        }

        open = new OpenFrame(BinaryPrimitives.ReadInt64BigEndian(frame[1..]), (MessageCodec)frame[9], max);
        return true;
    }

    /// <summary>Writes the header of a data frame; the caller copies the bytes after it.</summary>
    public static void WriteDataHeader(Span<byte> destination, long sessionId, long offset)
    {
        destination[0] = (byte)EchoMessageType.Data;
        BinaryPrimitives.WriteInt64BigEndian(destination[1..], sessionId);
        BinaryPrimitives.WriteInt64BigEndian(destination[9..], offset);
    }

    public static bool TryReadData(ReadOnlySpan<byte> frame, out long sessionId, out long offset, out ReadOnlySpan<byte> bytes)
    {
        sessionId = offset = 0;
        bytes = default;
        if (frame.Length < DataHeaderBytes || frame[0] != (byte)EchoMessageType.Data)
        {
            return false;
        }

        sessionId = BinaryPrimitives.ReadInt64BigEndian(frame[1..]);
        offset = BinaryPrimitives.ReadInt64BigEndian(frame[9..]);
        bytes = frame[DataHeaderBytes..];
        return offset >= 0;
    }

    /// <summary>Writes a digests frame for <paramref name="entries"/>; returns its length.</summary>
    public static int WriteDigests(Span<byte> destination, long sessionId, long delivered, ReadOnlySpan<DigestEntry> entries)
    {
        destination[0] = (byte)EchoMessageType.Digests;
        BinaryPrimitives.WriteInt64BigEndian(destination[1..], sessionId);
        BinaryPrimitives.WriteInt64BigEndian(destination[9..], delivered);
        BinaryPrimitives.WriteUInt16BigEndian(destination[17..], checked((ushort)entries.Length));
        var at = DigestsHeaderBytes;
        foreach (var entry in entries)
        {
            BinaryPrimitives.WriteInt64BigEndian(destination[at..], entry.Index);
            BinaryPrimitives.WriteInt64BigEndian(destination[(at + 8)..], entry.EndOffset);
            BinaryPrimitives.WriteUInt64BigEndian(destination[(at + 16)..], entry.Digest);
            at += DigestEntryBytes;
        }

        return at;
    }

    public static bool TryReadDigestsHeader(ReadOnlySpan<byte> frame, out long sessionId, out long delivered, out int count)
    {
        sessionId = delivered = 0;
        count = 0;
        if (frame.Length < DigestsHeaderBytes || frame[0] != (byte)EchoMessageType.Digests)
        {
            return false;
        }

        sessionId = BinaryPrimitives.ReadInt64BigEndian(frame[1..]);
        delivered = BinaryPrimitives.ReadInt64BigEndian(frame[9..]);
        count = BinaryPrimitives.ReadUInt16BigEndian(frame[17..]);
        return delivered >= 0 && frame.Length == DigestsHeaderBytes + (count * DigestEntryBytes);
    }

    public static DigestEntry ReadDigestEntry(ReadOnlySpan<byte> frame, int i)
    {
        var at = DigestsHeaderBytes + (i * DigestEntryBytes);
        return new DigestEntry(
            BinaryPrimitives.ReadInt64BigEndian(frame[at..]),
            BinaryPrimitives.ReadInt64BigEndian(frame[(at + 8)..]),
            BinaryPrimitives.ReadUInt64BigEndian(frame[(at + 16)..]));
    }

    public static int WriteClose(Span<byte> destination, long sessionId)
    {
        destination[0] = (byte)EchoMessageType.Close;
        BinaryPrimitives.WriteInt64BigEndian(destination[1..], sessionId);
        return CloseBytes;
    }

    public static bool TryReadClose(ReadOnlySpan<byte> frame, out long sessionId)
    {
        sessionId = 0;
        if (frame.Length != CloseBytes || frame[0] != (byte)EchoMessageType.Close)
        {
            return false;
        }

        sessionId = BinaryPrimitives.ReadInt64BigEndian(frame[1..]);
        return true;
    }

    public static int WriteAck(Span<byte> destination, in AckFrame ack)
    {
        destination[0] = (byte)EchoMessageType.Ack;
        BinaryPrimitives.WriteInt64BigEndian(destination[1..], ack.SessionId);
        BinaryPrimitives.WriteInt64BigEndian(destination[9..], ack.Applied);
        BinaryPrimitives.WriteInt64BigEndian(destination[17..], ack.ShadowMessages);
        destination[25] = (byte)ack.Status;
        BinaryPrimitives.WriteInt64BigEndian(destination[26..], ack.DivergedIndex);
        destination[34] = ack.BackendClosed ? (byte)1 : (byte)0;
        return AckBytes;
    }

    public static bool TryReadAck(ReadOnlySpan<byte> frame, out AckFrame ack)
    {
        ack = default;
        if (frame.Length != AckBytes || frame[0] != (byte)EchoMessageType.Ack || !Enum.IsDefined((DigestStatus)frame[25]) || frame[34] > 1)
        {
            return false;
        }

        ack = new AckFrame(
            BinaryPrimitives.ReadInt64BigEndian(frame[1..]),
            BinaryPrimitives.ReadInt64BigEndian(frame[9..]),
            BinaryPrimitives.ReadInt64BigEndian(frame[17..]),
            (DigestStatus)frame[25],
            BinaryPrimitives.ReadInt64BigEndian(frame[26..]),
            frame[34] == 1);
        return ack.Applied >= 0 && ack.ShadowMessages >= 0;
    }

    /// <summary>An agent tells the relay that it could not keep a shadow (backend refused, limit reached).</summary>
    public static byte[] ShadowFailed(long sessionId, string reason)
    {
        var text = Encoding.UTF8.GetBytes(Truncate(reason));
        var frame = new byte[1 + 8 + text.Length];
        frame[0] = (byte)EchoMessageType.ShadowFailed;
        BinaryPrimitives.WriteInt64BigEndian(frame.AsSpan(1), sessionId);
        text.CopyTo(frame, 9);
        return frame;
    }

    public static bool TryReadShadowFailed(ReadOnlySpan<byte> frame, out long sessionId, out string reason)
    {
        sessionId = 0;
        reason = "";
        if (frame.Length < 9 || frame[0] != (byte)EchoMessageType.ShadowFailed)
        {
            return false;
        }

        sessionId = BinaryPrimitives.ReadInt64BigEndian(frame[1..]);
        return TryDecodeText(frame[9..], out reason);
    }

    // ---- control messages ----

    public static byte[] Hello(in HelloRequest hello)
    {
        var buffer = new List<byte>(64) { (byte)EchoMessageType.Hello, (byte)hello.Version };
        AppendInt64(buffer, hello.RelayId);
        buffer.Add((byte)hello.Purpose);
        AppendEndPoints(buffer, hello.RelayPaths);
        return [.. buffer];
    }

    public static bool TryReadHello(ReadOnlySpan<byte> message, out HelloRequest hello)
    {
        hello = default;
        if (message.Length < 12 || message[0] != (byte)EchoMessageType.Hello || message[10] > (byte)ConnectionPurpose.Takeover)
        {
            return false;
        }

        var at = 11;
        if (!TryReadEndPoints(message, ref at, out var paths) || at != message.Length)
        {
            return false;
        }

        hello = new HelloRequest(message[1], BinaryPrimitives.ReadInt64BigEndian(message[2..]), (ConnectionPurpose)message[10], paths);
        return true;
    }

    public static byte[] HelloOk(in HelloAnswer answer)
    {
        var buffer = new List<byte>(64) { (byte)EchoMessageType.HelloOk };
        AppendText(buffer, answer.AgentId);
        AppendEndPoints(buffer, answer.AgentPaths);
        return [.. buffer];
    }

    public static bool TryReadHelloOk(ReadOnlySpan<byte> message, out HelloAnswer answer)
    {
        answer = default;
        if (message.Length < 2 || message[0] != (byte)EchoMessageType.HelloOk)
        {
            return false;
        }

        var at = 1;
        if (!TryReadText(message, ref at, out var id) || !TryReadEndPoints(message, ref at, out var paths) || at != message.Length)
        {
            return false;
        }

        answer = new HelloAnswer(id, paths);
        return true;
    }

    /// <summary>Refusal of a hello or a takeover, with a sentence for the relay's log.</summary>
    public static byte[] Refused(string reason)
    {
        var text = Encoding.UTF8.GetBytes(Truncate(reason));
        return [(byte)EchoMessageType.Refused, .. text];
    }

    public static bool TryReadRefused(ReadOnlySpan<byte> message, out string reason)
    {
        reason = "";
        return message.Length >= 1 && message[0] == (byte)EchoMessageType.Refused && TryDecodeText(message[1..], out reason);
    }

    public static byte[] Takeover(in TakeoverRequest request)
    {
        var message = new byte[1 + 8 + 8 + 8 + 8 + 1 + 8 + 8];
        message[0] = (byte)EchoMessageType.Takeover;
        BinaryPrimitives.WriteInt64BigEndian(message.AsSpan(1), request.RelayId);
        BinaryPrimitives.WriteInt64BigEndian(message.AsSpan(9), request.SessionId);
        BinaryPrimitives.WriteInt64BigEndian(message.AsSpan(17), request.InOffset);
        BinaryPrimitives.WriteInt64BigEndian(message.AsSpan(25), request.Delivered);
        message[33] = request.DeliveredIsMessages ? (byte)1 : (byte)0;
        BinaryPrimitives.WriteInt64BigEndian(message.AsSpan(34), request.TailStart);
        BinaryPrimitives.WriteInt64BigEndian(message.AsSpan(42), request.TailLength);
        return message;
    }

    public static bool TryReadTakeover(ReadOnlySpan<byte> message, out TakeoverRequest request)
    {
        request = default;
        if (message.Length != 50 || message[0] != (byte)EchoMessageType.Takeover || message[33] > 1)
        {
            return false;
        }

        request = new TakeoverRequest(
            BinaryPrimitives.ReadInt64BigEndian(message[1..]),
            BinaryPrimitives.ReadInt64BigEndian(message[9..]),
            BinaryPrimitives.ReadInt64BigEndian(message[17..]),
            BinaryPrimitives.ReadInt64BigEndian(message[25..]),
            message[33] == 1,
            BinaryPrimitives.ReadInt64BigEndian(message[34..]),
            BinaryPrimitives.ReadInt64BigEndian(message[42..]));
        return request.InOffset >= 0 && request.Delivered >= 0 && request.TailStart >= 0 && request.TailLength >= 0
            && request.TailStart + request.TailLength == request.InOffset;
    }

    /// <summary>
    /// Announces a planned takeover of a session before the relay pauses it, so that the agent is awake
    /// (and checked that it can take the session) when the TAKEOVER comes.
    /// </summary>
    public static byte[] TakeoverPrepare(long relayId, long sessionId)
    {
        var message = new byte[17];
        message[0] = (byte)EchoMessageType.TakeoverPrepare;
        BinaryPrimitives.WriteInt64BigEndian(message.AsSpan(1), relayId);
        BinaryPrimitives.WriteInt64BigEndian(message.AsSpan(9), sessionId);
        return message;
    }

    public static bool TryReadTakeoverPrepare(ReadOnlySpan<byte> message, out long relayId, out long sessionId)
    {
        relayId = sessionId = 0;
        if (message.Length != 17 || message[0] != (byte)EchoMessageType.TakeoverPrepare)
        {
            return false;
        }

        relayId = BinaryPrimitives.ReadInt64BigEndian(message[1..]);
        sessionId = BinaryPrimitives.ReadInt64BigEndian(message[9..]);
        return true;
    }

    /// <summary>The agent holds the prepared session's shadow and waits, awake, for the TAKEOVER.</summary>
    public static byte[] TakeoverPrepared() => [(byte)EchoMessageType.TakeoverPrepared];

    public static bool IsTakeoverPrepared(ReadOnlySpan<byte> message) => message.Length == 1 && message[0] == (byte)EchoMessageType.TakeoverPrepared;

    /// <summary>A chunk of the takeover's log tail: the message type, then the bytes.</summary>
    public static byte[] TakeoverTail(ReadOnlySpan<byte> chunk) => [(byte)EchoMessageType.TakeoverTail, .. chunk];

    /// <summary>The agent applied the tail and skipped <paramref name="skippedOutputBytes"/> of its backend's output.</summary>
    public static byte[] TakeoverOk(long skippedOutputBytes)
    {
        var message = new byte[9];
        message[0] = (byte)EchoMessageType.TakeoverOk;
        BinaryPrimitives.WriteInt64BigEndian(message.AsSpan(1), skippedOutputBytes);
        return message;
    }

    public static bool TryReadTakeoverOk(ReadOnlySpan<byte> message, out long skippedOutputBytes)
    {
        skippedOutputBytes = 0;
        if (message.Length != 9 || message[0] != (byte)EchoMessageType.TakeoverOk)
        {
            return false;
        }

        skippedOutputBytes = BinaryPrimitives.ReadInt64BigEndian(message[1..]);
        return skippedOutputBytes >= 0;
    }

    public static byte[] Heartbeat(in HeartbeatFrame heartbeat)
    {
        var message = new byte[1 + 8 + 8 + 4 + 4 + 8];
        message[0] = (byte)EchoMessageType.Heartbeat;
        BinaryPrimitives.WriteDoubleBigEndian(message.AsSpan(1), heartbeat.CpuPercent);
        BinaryPrimitives.WriteInt64BigEndian(message.AsSpan(9), heartbeat.MemoryBytes);
        BinaryPrimitives.WriteInt32BigEndian(message.AsSpan(17), heartbeat.Sessions);
        BinaryPrimitives.WriteInt32BigEndian(message.AsSpan(21), heartbeat.ShadowSessions);
        BinaryPrimitives.WriteInt64BigEndian(message.AsSpan(25), heartbeat.MemoryTotalBytes);
        return message;
    }

    public static bool TryReadHeartbeat(ReadOnlySpan<byte> message, out HeartbeatFrame heartbeat)
    {
        heartbeat = default;
        if (message.Length != 33 || message[0] != (byte)EchoMessageType.Heartbeat)
        {
            return false;
        }

        heartbeat = new HeartbeatFrame(
            BinaryPrimitives.ReadDoubleBigEndian(message[1..]),
            BinaryPrimitives.ReadInt64BigEndian(message[9..]),
            BinaryPrimitives.ReadInt32BigEndian(message[17..]),
            BinaryPrimitives.ReadInt32BigEndian(message[21..]),
            BinaryPrimitives.ReadInt64BigEndian(message[25..]));
        return double.IsFinite(heartbeat.CpuPercent) && heartbeat.MemoryBytes >= 0 && heartbeat.Sessions >= 0 && heartbeat.ShadowSessions >= 0
            && heartbeat.MemoryTotalBytes >= 0;
    }

    // ---- helpers ----

    private static string Truncate(string text) => text.Length <= 512 ? text : text[..512];

    private static bool TryDecodeText(ReadOnlySpan<byte> bytes, out string text)
    {
        text = "";
        if (bytes.Length > 2048)
        {
            return false;
        }

        try
        {
            text = new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(bytes);
            return true;
        }
        catch (DecoderFallbackException)
        {
            return false;
        }
    }

    private static void AppendInt64(List<byte> buffer, long value)
    {
        Span<byte> bytes = stackalloc byte[8];
        BinaryPrimitives.WriteInt64BigEndian(bytes, value);
        foreach (var b in bytes)
        {
            buffer.Add(b);
        }
    }

    private static void AppendText(List<byte> buffer, string text)
    {
        var bytes = Encoding.UTF8.GetBytes(Truncate(text));
        buffer.Add((byte)(bytes.Length >> 8));
        buffer.Add((byte)bytes.Length);
        buffer.AddRange(bytes);
    }

    private static bool TryReadText(ReadOnlySpan<byte> message, ref int at, out string text)
    {
        text = "";
        if (message.Length - at < 2)
        {
            return false;
        }

        var length = BinaryPrimitives.ReadUInt16BigEndian(message[at..]);
        at += 2;
        if (message.Length - at < length || !TryDecodeText(message.Slice(at, length), out text))
        {
            return false;
        }

        at += length;
        return true;
    }

    private static void AppendEndPoints(List<byte> buffer, IReadOnlyList<IPEndPoint> endPoints)
    {
        buffer.Add(checked((byte)endPoints.Count));
        foreach (var endPoint in endPoints)
        {
            var address = endPoint.Address.GetAddressBytes();
            buffer.Add((byte)address.Length);
            buffer.AddRange(address);
            buffer.Add((byte)(endPoint.Port >> 8));
            buffer.Add((byte)endPoint.Port);
        }
    }

    private static bool TryReadEndPoints(ReadOnlySpan<byte> message, ref int at, out IReadOnlyList<IPEndPoint> endPoints)
    {
        endPoints = [];
        if (at >= message.Length)
        {
            return false;
        }

        var count = message[at++];
        if (count is 0 or > 16)
        {
            return false;
        }

        var list = new IPEndPoint[count];
        for (var i = 0; i < count; i++)
        {
            if (at >= message.Length)
            {
                return false;
            }

            var length = message[at++];
            if (length is not (4 or 16) || message.Length - at < length + 2)
            {
                return false;
            }

            var address = new IPAddress(message.Slice(at, length));
            at += length;
            var port = BinaryPrimitives.ReadUInt16BigEndian(message[at..]);
            at += 2;
            if (port == 0)
            {
                return false;
            }

            list[i] = new IPEndPoint(address, port);
        }

        endPoints = list;
        return true;
    }
}
