using System.Net;
using System.Net.Sockets;

namespace Relay.Transport.Sockets;

/// <summary>
/// A UDP socket bound locally and aimed at one remote address: one path of a channel. On Linux it
/// can turn on UDP GSO (UDP_SEGMENT) so a block's shards for this path leave in one system call.
/// </summary>
public sealed class UdpDatagramSocket : IDatagramSocket
{
    // include/uapi/linux/udp.h
    private const int SolUdp = 17;
    private const int UdpSegment = 103;
    private const int MaxGsoSegments = 64;
    private const int MaxGsoBytes = 65000;
    private const int SocketBufferBytes = 4 * 1024 * 1024;

    private readonly Socket _socket;
    private readonly SocketAddress _remote;
    private readonly SocketAddress _receiveAddress;
    private int _gsoSegmentBytes;

    private UdpDatagramSocket(Socket socket, IPEndPoint remote)
    {
        _socket = socket;
        RemoteEndPoint = remote;
        _remote = remote.Serialize();
        _receiveAddress = new SocketAddress(socket.AddressFamily);
    }

    public IPEndPoint LocalEndPoint => (IPEndPoint)_socket.LocalEndPoint!;

    public IPEndPoint RemoteEndPoint { get; private set; }

    /// <summary>The GSO segment size in force, or 0 when sends go one datagram per call.</summary>
    public int GsoSegmentBytes => _gsoSegmentBytes;

    public bool ReceivesCoalesced => false;

    /// <summary>Creates a UDP socket bound to <paramref name="local"/> (port 0 picks one).</summary>
    public static UdpDatagramSocket Bind(IPEndPoint local, IPEndPoint remote)
    {
        ArgumentNullException.ThrowIfNull(local);
        ArgumentNullException.ThrowIfNull(remote);
        var socket = new Socket(local.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
        try
        {
            socket.ReceiveBufferSize = SocketBufferBytes;
            socket.SendBufferSize = SocketBufferBytes;
            socket.Bind(local);
            return new UdpDatagramSocket(socket, remote);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>Points the socket at another remote address (used when the peer's port is learned late).</summary>
    public void SetRemote(IPEndPoint remote)
    {
        ArgumentNullException.ThrowIfNull(remote);
        RemoteEndPoint = remote;
        var serialized = remote.Serialize();
        serialized.Buffer.CopyTo(_remote.Buffer);
        _remote.Size = serialized.Size;
    }

    /// <summary>
    /// Turns on UDP GSO with <paramref name="segmentBytes"/> per datagram (Linux 4.18+). Returns false,
    /// and leaves sends one datagram per call, where the kernel or platform does not support it.
    /// </summary>
    public bool TryEnableGso(int segmentBytes)
    {
        if (!OperatingSystem.IsLinux())
        {
            return false;
        }

        try
        {
            Span<byte> value = stackalloc byte[sizeof(int)];
            BitConverter.TryWriteBytes(value, segmentBytes);
            _socket.SetRawSocketOption(SolUdp, UdpSegment, value);
            _gsoSegmentBytes = segmentBytes;
            return true;
        }
        catch (SocketException)
        {
            // ENOPROTOOPT on kernels without GSO: the plain path works everywhere.
            return false;
        }
    }

    public bool Send(ReadOnlySpan<byte> datagram)
    {
        try
        {
            _socket.SendTo(datagram, SocketFlags.None, _remote);
            return true;
        }
        catch (SocketException)
        {
            // Full buffers, ICMP errors reported late, an interface going away: the datagram is lost,
            // which the channel repairs like any other loss. The caller counts the failure.
            return false;
        }
        catch (ObjectDisposedException)
        {
            return false;
        }
    }

    public bool SendSegments(ReadOnlySpan<byte> datagrams, int segmentBytes, int count)
    {
        if (_gsoSegmentBytes != segmentBytes || count == 1)
        {
            var ok = true;
            for (var i = 0; i < count; i++)
            {
                var length = Math.Min(segmentBytes, datagrams.Length - (i * segmentBytes));
                ok &= Send(datagrams.Slice(i * segmentBytes, length));
            }

            return ok;
        }

        var perCall = Math.Min(MaxGsoSegments, MaxGsoBytes / segmentBytes);
        var all = true;
        for (var first = 0; first < count; first += perCall)
        {
            var n = Math.Min(perCall, count - first);
            var start = first * segmentBytes;
            var length = Math.Min(n * segmentBytes, datagrams.Length - start);
            all &= Send(datagrams.Slice(start, length));
        }

        return all;
    }

    public ValueTask<int> ReceiveAsync(Memory<byte> buffer, CancellationToken cancellationToken) =>
        _socket.ReceiveFromAsync(buffer, SocketFlags.None, _receiveAddress, cancellationToken);

    public void Dispose() => _socket.Dispose();
}
