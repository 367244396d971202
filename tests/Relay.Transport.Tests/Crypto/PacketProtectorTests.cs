using Relay.Transport.Crypto;
using Relay.Transport.Framing;
using Relay.Transport.Tests.Support;

namespace Relay.Transport.Tests.Crypto;

public class PacketProtectorTests
{
    [Theory]
    [InlineData(AeadAlgorithm.Aes256Gcm)]
    [InlineData(AeadAlgorithm.ChaCha20Poly1305)]
    public void SealThenOpen_RoundTrips_AndAnyChangedByteFails(AeadAlgorithm algorithm)
    {
        var keys = TestKeys.Fresh();
        using var sealer = new PacketProtector(algorithm, keys.Send(isClient: true));
        using var opener = new PacketProtector(algorithm, keys.Receive(isClient: false));
        var payload = new byte[300];
        new Random(5).NextBytes(payload);
        var datagram = new byte[payload.Length + WireFormat.OverheadBytes];
        var length = sealer.Seal(PacketType.Data, 3, 77, payload, datagram);
        Assert.Equal(datagram.Length, length);

        Assert.True(WireFormat.TryParseHeader(datagram, 65507, out var header, out _));
        Assert.Equal((PacketType.Data, (byte)3, 77UL), (header.Type, header.Path, header.PacketNumber));
        var plain = new byte[payload.Length];
        Assert.True(opener.TryOpen(datagram, header, plain));
        Assert.Equal(payload, plain);

        // The header is authenticated too: flipping any byte (header, ciphertext or tag) fails.
        for (var i = 0; i < datagram.Length; i += 7)
        {
            var tampered = (byte[])datagram.Clone();
            tampered[i] ^= 0x01;
            if (!WireFormat.TryParseHeader(tampered, 65507, out var h, out _))
            {
                continue;
            }

            Assert.False(opener.TryOpen(tampered, h, plain), $"byte {i} changed and still opened");
        }
    }

    [Fact]
    public void Directions_HaveDistinctKeys_SoAReflectedDatagramFails()
    {
        var keys = TestKeys.Fresh();
        using var clientSealer = new PacketProtector(AeadAlgorithm.Aes256Gcm, keys.Send(isClient: true));
        using var clientOpener = new PacketProtector(AeadAlgorithm.Aes256Gcm, keys.Receive(isClient: true));
        var datagram = new byte[100 + WireFormat.OverheadBytes];
        clientSealer.Seal(PacketType.Probe, 0, 1, new byte[100], datagram);
        Assert.True(WireFormat.TryParseHeader(datagram, 65507, out var header, out _));
        Assert.False(clientOpener.TryOpen(datagram, header, new byte[100]));
    }

    [Theory]
    [InlineData(false, true)]
    [InlineData(true, false)]
    public void AesNiAndFrameworkAes_OpenEachOthersDatagrams(bool sealWithFramework, bool openWithFramework)
    {
        Assert.SkipUnless(AesGcmIntrinsics.IsSupported, "this CPU lacks AES-NI or PCLMULQDQ: only the framework's AesGcm runs here");
        var keys = TestKeys.Fresh();
        using var sealer = new PacketProtector(AeadAlgorithm.Aes256Gcm, keys.Send(isClient: true), sealWithFramework);
        using var opener = new PacketProtector(AeadAlgorithm.Aes256Gcm, keys.Receive(isClient: false), openWithFramework);
        Assert.Equal(sealWithFramework ? "openssl" : "aes-ni", sealer.Implementation);
        Assert.Equal(openWithFramework ? "openssl" : "aes-ni", opener.Implementation);
        var random = new Random(11);
        foreach (var size in new[] { 0, 1, 15, 16, 17, 127, 128, 129, 1200, 1400 })
        {
            var payload = new byte[size];
            random.NextBytes(payload);
            var datagram = new byte[size + WireFormat.OverheadBytes];
            sealer.Seal(PacketType.Data, 1, (ulong)size, payload, datagram);
            Assert.True(WireFormat.TryParseHeader(datagram, 65507, out var header, out _));
            var plain = new byte[size];
            Assert.True(opener.TryOpen(datagram, header, plain), $"size {size}");
            Assert.Equal(payload, plain);

            datagram[^1] ^= 1;
            Assert.False(opener.TryOpen(datagram, header, plain), $"size {size}: a changed tag must fail");
        }
    }

    [Fact]
    public void KeyDerivation_DependsOnPskAndBothNonces()
    {
        var nc = new byte[32];
        var ns = new byte[32];
        ns[0] = 1;
        var a = TransportKeys.Derive(TestKeys.Psk, nc, ns);
        var b = TransportKeys.Derive(TestKeys.Psk, nc, ns);
        Assert.Equal(a.ClientToServer.Key, b.ClientToServer.Key);
        Assert.NotEqual(a.ClientToServer.Key, a.ServerToClient.Key);
        Assert.NotEqual(a.ClientToServer.Iv, a.ServerToClient.Iv);

        var otherNonce = TransportKeys.Derive(TestKeys.Psk, ns, nc);
        Assert.NotEqual(a.ClientToServer.Key, otherNonce.ClientToServer.Key);
        var otherPsk = TransportKeys.Derive(Enumerable.Repeat((byte)9, 32).ToArray(), nc, ns);
        Assert.NotEqual(a.ClientToServer.Key, otherPsk.ClientToServer.Key);
        Assert.Throws<ArgumentException>(() => TransportKeys.Derive(new byte[16], nc, ns));
    }
}
