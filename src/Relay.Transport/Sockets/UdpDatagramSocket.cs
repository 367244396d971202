using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Relay.Transport.Sockets;

/// <summary>
/// A UDP socket bound locally and aimed at one remote address: one path of a channel. On Linux it
/// can turn on UDP GSO (UDP_SEGMENT) so a block's shards for this path leave in one system call.
/// </summary>
public sealed partial class UdpDatagramSocket : IDatagramSocket
{
    // include/uapi/linux/udp.h
    private const int SolUdp = 17;
    private const int UdpSegment = 103;
    private const int UdpGro = 104;
    private const int MsgDontWait = 0x40;
    private const int EAgain = 11;
    private const int MaxGsoSegments = 64;
    private const int MaxGsoBytes = 65000;
    private const int SocketBufferBytes = 4 * 1024 * 1024;

    private readonly Socket _socket;
    private readonly SocketAddress _remote;
    private readonly SocketAddress _receiveAddress;
    private int _gsoSegmentBytes;
    private bool _gro;
    private byte[]? _control;

    private UdpDatagramSocket(Socket socket, IPEndPoint remote)
    {
        _socket = socket;
        RemoteEndPoint = remote;
        _remote = remote.Serialize();
        _receiveAddress = new SocketAddress(socket.AddressFamily);
    }

    public IPEndPoint LocalEndPoint => (IPEndPoint)_socket.LocalEndPoint!;

    public IPEndPoint RemoteEndPoint { get; private set; }

    /// <summary>The largest GSO segment size sends may use, or 0 when sends go one datagram per call.</summary>
    public int GsoSegmentBytes => _gsoSegmentBytes;

    public bool ReceivesCoalesced => _gro;

    /// <summary>A closed socket throws from <see cref="ReceiveAsync"/>; a 0 is an empty datagram.</summary>
    public bool ZeroIsEmptyDatagram => true;

    public int LastSegmentBytes { get; private set; }

    /// <summary>Receives that returned several datagrams coalesced by GRO (for tests and diagnostics).</summary>
    public long CoalescedReceives { get; private set; }

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
    public bool TryEnableGso(int segmentBytes) => OperatingSystem.IsLinux() && Environment.Is64BitProcess && TryProbeGso(segmentBytes);

    /// <summary>
    /// Turns on UDP GRO (Linux 5.0+): the kernel may hand over several same-size datagrams of one
    /// flow in one receive, with their size in a UDP_GRO control message, which this socket reads
    /// with recvmsg(2). Returns false where unsupported; receives then stay one datagram each.
    /// </summary>
    public bool TryEnableGro()
    {
        if (!OperatingSystem.IsLinux() || !Environment.Is64BitProcess)
        {
            return false;
        }

        try
        {
            Span<byte> value = stackalloc byte[sizeof(int)];
            BitConverter.TryWriteBytes(value, 1);
            _socket.SetRawSocketOption(SolUdp, UdpGro, value);
            _control = GC.AllocateArray<byte>(64, pinned: true);
            _gro = true;
            return true;
        }
        catch (SocketException)
        {
            // ENOPROTOOPT on kernels without UDP GRO.
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
        if (_gsoSegmentBytes == 0 || count == 1 || segmentBytes > _gsoSegmentBytes)
        {
            return SendEach(datagrams, segmentBytes, count);
        }

        // Blocks size their shards to their content, so the segment size travels with each call
        // (a UDP_SEGMENT control message) rather than as a socket option: a plain send from another
        // thread (an ack, a repair) is then never cut into pieces of some block's size.
        var perCall = Math.Min(MaxGsoSegments, MaxGsoBytes / segmentBytes);
        var all = true;
        for (var first = 0; first < count; first += perCall)
        {
            var n = Math.Min(perCall, count - first);
            var start = first * segmentBytes;
            var length = Math.Min(n * segmentBytes, datagrams.Length - start);
            var slice = datagrams.Slice(start, length);
            var sent = SendWithSegmentSize(slice, segmentBytes);
            if (sent > 0)
            {
                GsoSends++;
            }
            else
            {
                // A full send buffer (EAGAIN) or a refusal: one datagram per call, which blocks as
                // plain sends do, so the caller still feels the backpressure.
                all &= sent == 0 && SendEach(slice, segmentBytes, n);
            }
        }

        return all;
    }

    private bool SendEach(ReadOnlySpan<byte> datagrams, int segmentBytes, int count)
    {
        var ok = true;
        for (var i = 0; i < count; i++)
        {
            var length = Math.Min(segmentBytes, datagrams.Length - (i * segmentBytes));
            ok &= Send(datagrams.Slice(i * segmentBytes, length));
        }

        return ok;
    }

    /// <summary>Sends that carried several datagrams through GSO (for tests and diagnostics).</summary>
    public long GsoSends { get; private set; }

    /// <summary>
    /// One sendmsg(2) with a UDP_SEGMENT control message: 1 when sent, 0 when the kernel asks to try
    /// again (EAGAIN) or refuses this call, -1 when the socket is gone.
    /// </summary>
    private unsafe int SendWithSegmentSize(ReadOnlySpan<byte> datagrams, int segmentBytes)
    {
        // struct cmsghdr (len, level, type) then a u16, padded to CMSG_SPACE(2) = 24 bytes.
        var control = stackalloc byte[24];
        new Span<byte>(control, 24).Clear();
        *(ulong*)control = 16 + sizeof(ushort);
        *(int*)(control + 8) = SolUdp;
        *(int*)(control + 12) = UdpSegment;
        *(ushort*)(control + 16) = (ushort)segmentBytes;
        try
        {
            fixed (byte* data = datagrams)
            fixed (byte* name = _remote.Buffer.Span)
            {
                var iov = new IoVec { Base = data, Length = (nuint)datagrams.Length };
                var header = new MessageHeader
                {
                    Name = name,
                    NameLength = (uint)_remote.Size,
                    Iov = &iov,
                    IovLength = 1,
                    Control = control,
                    ControlLength = 24,
                };
                return sendmsg((int)_socket.Handle, &header, MsgDontWait) >= 0 ? 1 : 0;
            }
        }
        catch (ObjectDisposedException)
        {
            return -1;
        }
    }

    /// <summary>
    /// Checks that the kernel takes UDP_SEGMENT (ENOPROTOOPT without GSO; sends then go one datagram
    /// per call, which works everywhere), then clears it again: sizes go with each call.
    /// </summary>
    private bool TryProbeGso(int segmentBytes)
    {
        try
        {
            Span<byte> value = stackalloc byte[sizeof(int)];
            BitConverter.TryWriteBytes(value, segmentBytes);
            _socket.SetRawSocketOption(SolUdp, UdpSegment, value);
            BitConverter.TryWriteBytes(value, 0);
            _socket.SetRawSocketOption(SolUdp, UdpSegment, value);
            _gsoSegmentBytes = segmentBytes;
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    public ValueTask<int> ReceiveAsync(Memory<byte> buffer, CancellationToken cancellationToken)
    {
        if (!_gro)
        {
            return _socket.ReceiveFromAsync(buffer, SocketFlags.None, _receiveAddress, cancellationToken);
        }

        var received = TryReceiveMessage(buffer.Span);
        return received >= 0 ? new ValueTask<int>(received) : ReceiveGroSlowAsync(buffer, cancellationToken);
    }

    private async ValueTask<int> ReceiveGroSlowAsync(Memory<byte> buffer, CancellationToken cancellationToken)
    {
        while (true)
        {
            // A zero-byte peek waits, through .NET's own epoll engine, until a datagram is queued,
            // without consuming it; recvmsg then takes it together with its control message.
            await _socket.ReceiveAsync(Memory<byte>.Empty, SocketFlags.Peek, cancellationToken).ConfigureAwait(false);
            var received = TryReceiveMessage(buffer.Span);
            if (received >= 0)
            {
                return received;
            }
        }
    }

    /// <summary>Non-blocking recvmsg; -1 when nothing is queued.</summary>
    private unsafe int TryReceiveMessage(Span<byte> buffer)
    {
        fixed (byte* data = buffer)
        fixed (byte* control = _control)
        {
            var iov = new IoVec { Base = data, Length = (nuint)buffer.Length };
            var header = new MessageHeader { Iov = &iov, IovLength = 1, Control = control, ControlLength = (nuint)_control!.Length };
            nint n = recvmsg((int)_socket.Handle, &header, MsgDontWait);
            if (n < 0)
            {
                var errno = Marshal.GetLastPInvokeError();
                if (errno == EAgain)
                {
                    return -1;
                }

                throw new SocketException(errno);
            }

            LastSegmentBytes = 0;
            var offset = 0;
            while (offset + 16 <= (int)header.ControlLength)
            {
                var length = (int)*(ulong*)(control + offset);
                var level = *(int*)(control + offset + 8);
                var type = *(int*)(control + offset + 12);
                if (length < 16)
                {
                    break;
                }

                if (level == SolUdp && type == UdpGro && length >= 20)
                {
                    LastSegmentBytes = *(int*)(control + offset + 16);
                    if (n > LastSegmentBytes)
                    {
                        CoalescedReceives++;
                    }
                }

                offset += (length + 7) & ~7;
            }

            return (int)n;
        }
    }

    [StructLayout(LayoutKind.Sequential)]
    private unsafe struct IoVec
    {
        public byte* Base;
        public nuint Length;
    }

    // struct msghdr on 64-bit Linux.
    [StructLayout(LayoutKind.Sequential)]
    private unsafe struct MessageHeader
    {
        public void* Name;
        public uint NameLength;
        public IoVec* Iov;
        public nuint IovLength;
        public byte* Control;
        public nuint ControlLength;
        public int Flags;
    }

    [LibraryImport("libc", EntryPoint = "sendmsg", SetLastError = true)]
    private static unsafe partial nint sendmsg(int socket, MessageHeader* message, int flags);

    [LibraryImport("libc", EntryPoint = "recvmsg", SetLastError = true)]
    private static unsafe partial nint recvmsg(int socket, MessageHeader* message, int flags);

    public void Dispose() => _socket.Dispose();
}
