namespace Relay.Transport.Sockets;

/// <summary>
/// One path's datagram endpoint: a connected-style UDP socket (or, in tests, an in-memory link end).
/// The channel owns it and disposes it.
/// </summary>
public interface IDatagramSocket : IDisposable
{
    /// <summary>Sends one datagram to the path's remote end. Failures are swallowed and counted by the caller.</summary>
    public bool Send(ReadOnlySpan<byte> datagram);

    /// <summary>
    /// Sends <paramref name="count"/> datagrams of <paramref name="segmentBytes"/> each (the last may be
    /// shorter), laid end to end in <paramref name="datagrams"/>; with UDP GSO in one system call.
    /// </summary>
    public bool SendSegments(ReadOnlySpan<byte> datagrams, int segmentBytes, int count);

    /// <summary>
    /// Receives into <paramref name="buffer"/>; returns the byte count, or 0 once the socket is closed
    /// (or, where <see cref="ZeroIsEmptyDatagram"/>, for an empty datagram).
    /// </summary>
    public ValueTask<int> ReceiveAsync(Memory<byte> buffer, CancellationToken cancellationToken);

    /// <summary>
    /// True when a 0 from <see cref="ReceiveAsync"/> is an empty datagram and not the end of the socket
    /// (a real UDP socket throws once it is closed). Anyone who can reach the port can send an empty
    /// datagram, so the channel drops it as <c>Truncated</c> and keeps receiving. A wrapper forwards its
    /// inner socket's value.
    /// </summary>
    public bool ZeroIsEmptyDatagram => false;

    /// <summary>True when a receive may return several datagrams of one segment size coalesced (UDP GRO).</summary>
    public bool ReceivesCoalesced { get; }

    /// <summary>
    /// After a receive: the segment size of a coalesced buffer (the kernel's UDP_GRO control message),
    /// or 0 when the buffer holds exactly one datagram. Read by the single receive loop right after
    /// <see cref="ReceiveAsync"/> completes.
    /// </summary>
    public int LastSegmentBytes { get; }
}
