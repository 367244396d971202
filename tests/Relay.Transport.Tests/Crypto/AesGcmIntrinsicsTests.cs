using System.Security.Cryptography;
using Relay.Transport.Crypto;

namespace Relay.Transport.Tests.Crypto;

public class AesGcmIntrinsicsTests
{
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void RandomInputs_MatchTheFrameworksAesGcm_BitForBit(bool allowWide)
    {
        Assert.SkipUnless(AesGcmIntrinsics.IsSupported, "this CPU lacks AES-NI or PCLMULQDQ; PacketProtector uses AesGcm here");
        var random = new Random(20261123);
        for (var round = 0; round < 400; round++)
        {
            var key = new byte[32];
            var nonce = new byte[12];
            random.NextBytes(key);
            random.NextBytes(nonce);

            // Every length class: empty, under a block, whole blocks, around the 8-block stride, datagram sizes.
            var length = round < 300 ? round : random.Next(0, 9000);
            var plaintext = new byte[length];
            var aad = new byte[random.Next(0, 3) == 0 ? 0 : random.Next(0, 300)];
            random.NextBytes(plaintext);
            random.NextBytes(aad);

            var expected = new byte[length];
            var expectedTag = new byte[16];
            using (var reference = new AesGcm(key, 16))
            {
                reference.Encrypt(nonce, plaintext, expected, expectedTag, aad);
            }

            using var cipher = new AesGcmIntrinsics(key, allowWide);
            var actual = new byte[length];
            var tag = new byte[16];
            cipher.Encrypt(nonce, plaintext, actual, tag, aad);
            Assert.True(expected.AsSpan().SequenceEqual(actual), $"ciphertext differs at length {length}, aad {aad.Length}");
            Assert.True(expectedTag.AsSpan().SequenceEqual(tag), $"tag differs at length {length}, aad {aad.Length}");

            var opened = new byte[length];
            Assert.True(cipher.TryDecrypt(nonce, actual, tag, opened, aad));
            Assert.Equal(plaintext, opened);
        }
    }

    [Theory]
    // NIST GCM specification test cases 13 and 14 (AES-256, zero key and nonce).
    [InlineData("", "", "530f8afbc74536b9a963b4f1c4cb738b")]
    [InlineData("00000000000000000000000000000000", "cea7403d4d606b6e074ec5d3baf39d18", "d0d1c8a799996bf0265b98b5d48ab919")]
    public void PublishedTestVectors(string plaintextHex, string ciphertextHex, string tagHex)
    {
        Assert.SkipUnless(AesGcmIntrinsics.IsSupported, "this CPU lacks AES-NI or PCLMULQDQ");
        using var cipher = new AesGcmIntrinsics(new byte[32]);
        var plaintext = Convert.FromHexString(plaintextHex);
        var ciphertext = new byte[plaintext.Length];
        var tag = new byte[16];
        cipher.Encrypt(new byte[12], plaintext, ciphertext, tag, []);
        Assert.Equal(ciphertextHex, Convert.ToHexStringLower(ciphertext));
        Assert.Equal(tagHex, Convert.ToHexStringLower(tag));
    }

    [Fact]
    public void AChangedBitAnywhere_FailsAndWritesNoPlaintext()
    {
        Assert.SkipUnless(AesGcmIntrinsics.IsSupported, "this CPU lacks AES-NI or PCLMULQDQ");
        var key = RandomNumberGenerator.GetBytes(32);
        var nonce = RandomNumberGenerator.GetBytes(12);
        var plaintext = RandomNumberGenerator.GetBytes(1200);
        var aad = RandomNumberGenerator.GetBytes(12);
        using var cipher = new AesGcmIntrinsics(key);
        var ciphertext = new byte[plaintext.Length];
        var tag = new byte[16];
        cipher.Encrypt(nonce, plaintext, ciphertext, tag, aad);

        var output = new byte[plaintext.Length];
        foreach (var (part, index) in new[] { (ciphertext, 0), (ciphertext, 1199), (ciphertext, 640), (tag, 0), (tag, 15), (aad, 3), (nonce, 11) })
        {
            part[index] ^= 0x80;
            output.AsSpan().Fill(0xAA);
            Assert.False(cipher.TryDecrypt(nonce, ciphertext, tag, output, aad));
            Assert.True(output.AsSpan().IndexOfAnyExcept((byte)0) < 0, "a failed open must leave no plaintext behind");
            part[index] ^= 0x80;
        }

        Assert.True(cipher.TryDecrypt(nonce, ciphertext, tag, output, aad));
        Assert.Equal(plaintext, output);
    }

    [Fact]
    public void WrongSizes_AreRefusedClearly()
    {
        Assert.SkipUnless(AesGcmIntrinsics.IsSupported, "this CPU lacks AES-NI or PCLMULQDQ");
        Assert.Contains("32 bytes", Assert.Throws<ArgumentException>(() => new AesGcmIntrinsics(new byte[16])).Message, StringComparison.Ordinal);
        using var cipher = new AesGcmIntrinsics(new byte[32]);
        Assert.Throws<ArgumentException>(() => cipher.Encrypt(new byte[8], new byte[4], new byte[4], new byte[16], []));
        Assert.Throws<ArgumentException>(() => cipher.Encrypt(new byte[12], new byte[4], new byte[3], new byte[16], []));
        Assert.Throws<ArgumentException>(() => cipher.Encrypt(new byte[12], new byte[4], new byte[4], new byte[12], []));
    }
}
