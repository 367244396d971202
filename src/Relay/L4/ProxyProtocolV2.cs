using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;

namespace Relay.L4;

/// <summary>
/// Writes a PROXY protocol version 2 header (haproxy.org/download/2.6/doc/proxy-protocol.txt,
/// section 2.2): the client's and the relay's addresses, so the upstream sees who connected.
/// </summary>
public static class ProxyProtocolV2
{
    /// <summary>The 12-byte signature every v2 header starts with.</summary>
    public static ReadOnlySpan<byte> Signature => [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A];

    public const int MaxHeaderBytes = 16 + 36;

    /// <summary>Writes the header into <paramref name="destination"/>; returns the bytes written.</summary>
    public static int Write(Span<byte> destination, EndPoint? source, EndPoint? destinationAddress)
    {
        Signature.CopyTo(destination);
        if (source is IPEndPoint src && destinationAddress is IPEndPoint dst)
        {
            var srcAddress = src.Address;
            var dstAddress = dst.Address;
            if (srcAddress.IsIPv4MappedToIPv6)
            {
                srcAddress = srcAddress.MapToIPv4();
            }

            if (dstAddress.IsIPv4MappedToIPv6)
            {
                dstAddress = dstAddress.MapToIPv4();
            }

            if (srcAddress.AddressFamily == dstAddress.AddressFamily)
            {
                var v4 = srcAddress.AddressFamily == AddressFamily.InterNetwork;
                var addressBytes = v4 ? 4 : 16;
                destination[12] = 0x21; // version 2, command PROXY
                destination[13] = (byte)(v4 ? 0x11 : 0x21); // AF_INET/AF_INET6, STREAM
                BinaryPrimitives.WriteUInt16BigEndian(destination[14..], (ushort)(addressBytes * 2 + 4));
                var offset = 16;
                srcAddress.TryWriteBytes(destination[offset..], out _);
                offset += addressBytes;
                dstAddress.TryWriteBytes(destination[offset..], out _);
                offset += addressBytes;
                BinaryPrimitives.WriteUInt16BigEndian(destination[offset..], (ushort)src.Port);
                BinaryPrimitives.WriteUInt16BigEndian(destination[(offset + 2)..], (ushort)dst.Port);
                return offset + 4;
            }
        }

        // Unknown addresses: the LOCAL command with no address block, which receivers must accept.
        destination[12] = 0x20;
        destination[13] = 0x00;
        BinaryPrimitives.WriteUInt16BigEndian(destination[14..], 0);
        return 16;
    }
}
