using System.Net;
using Relay.L4;

namespace Relay.Tests.L4;

public class ProxyProtocolV2Tests
{
    [Fact]
    public void IPv4_HeaderMatchesTheSpecification()
    {
        var buffer = new byte[ProxyProtocolV2.MaxHeaderBytes];
        var length = ProxyProtocolV2.Write(buffer, new IPEndPoint(IPAddress.Parse("10.1.2.3"), 50000), new IPEndPoint(IPAddress.Parse("192.168.0.1"), 443));
        byte[] expected =
        [
            0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
            0x21, 0x11, 0x00, 0x0C,
            10, 1, 2, 3, 192, 168, 0, 1,
            0xC3, 0x50, 0x01, 0xBB,
        ];
        Assert.Equal(expected, buffer[..length]);
    }

    [Fact]
    public void IPv6_AndMappedAddresses()
    {
        var buffer = new byte[ProxyProtocolV2.MaxHeaderBytes];
        var length = ProxyProtocolV2.Write(buffer, new IPEndPoint(IPAddress.IPv6Loopback, 1), new IPEndPoint(IPAddress.IPv6Loopback, 2));
        Assert.Equal(16 + 36, length);
        Assert.Equal(0x21, buffer[13]);
        Assert.Equal(36, buffer[15]);

        length = ProxyProtocolV2.Write(buffer, new IPEndPoint(IPAddress.Parse("::ffff:127.0.0.1"), 1), new IPEndPoint(IPAddress.Loopback, 2));
        Assert.Equal(28, length);
        Assert.Equal(0x11, buffer[13]);
    }

    [Fact]
    public void UnknownAddresses_UseTheLocalCommand()
    {
        var buffer = new byte[ProxyProtocolV2.MaxHeaderBytes];
        var length = ProxyProtocolV2.Write(buffer, null, null);
        Assert.Equal(16, length);
        Assert.Equal(0x20, buffer[12]);
        Assert.Equal(0, buffer[15]);
    }
}
