using System.Buffers.Binary;
using System.Security.Cryptography;
using Relay.Transport.Framing;

namespace Relay.Transport.Crypto;

public enum AeadAlgorithm
{
    Aes256Gcm = 0,
    ChaCha20Poly1305 = 1,
}

/// <summary>
/// Seals and opens datagrams of one direction: header as associated data, payload encrypted,
/// nonce = IV xor (path || packet number) (docs/transport.md section 2). Allocates nothing per call.
/// </summary>
/// <remarks>Not thread-safe (the underlying cipher objects are not): callers serialise per instance.</remarks>
internal sealed class PacketProtector : IDisposable
{
    private readonly AesGcmIntrinsics? _aesNi;
    private readonly AesGcm? _aes;
    private readonly ChaCha20Poly1305? _chacha;
    private readonly byte[] _iv;

    /// <param name="algorithm">The AEAD.</param>
    /// <param name="keys">This direction's key and IV.</param>
    /// <param name="frameworkAes">
    /// AES-256-GCM through the framework's <see cref="AesGcm"/> (OpenSSL) even where the CPU lets
    /// <see cref="AesGcmIntrinsics"/> run; for comparisons. Both produce the same bytes.
    /// </param>
    public PacketProtector(AeadAlgorithm algorithm, DirectionKeys keys, bool frameworkAes = false)
    {
        _iv = (byte[])keys.Iv.Clone();
        if (algorithm == AeadAlgorithm.ChaCha20Poly1305)
        {
            _chacha = new ChaCha20Poly1305(keys.Key);
        }
        else if (AesGcmIntrinsics.IsSupported && !frameworkAes)
        {
            _aesNi = new AesGcmIntrinsics(keys.Key);
        }
        else
        {
            _aes = new AesGcm(keys.Key, WireFormat.TagBytes);
        }
    }

    /// <summary>Which implementation seals and opens: "aes-ni", "openssl" (framework AesGcm) or "chacha20-poly1305".</summary>
    public string Implementation => _aesNi is not null ? "aes-ni" : _aes is not null ? "openssl" : "chacha20-poly1305";

    /// <summary>Writes header, ciphertext and tag into <paramref name="datagram"/>; returns the datagram's length.</summary>
    public int Seal(PacketType type, byte path, ulong packetNumber, ReadOnlySpan<byte> payload, Span<byte> datagram)
    {
        var length = WireFormat.OverheadBytes + payload.Length;
        WireFormat.WriteHeader(datagram, type, path, packetNumber);
        Span<byte> nonce = stackalloc byte[12];
        MakeNonce(path, packetNumber, nonce);
        var header = datagram[..WireFormat.HeaderBytes];
        var ciphertext = datagram.Slice(WireFormat.HeaderBytes, payload.Length);
        var tag = datagram.Slice(WireFormat.HeaderBytes + payload.Length, WireFormat.TagBytes);
        if (_aesNi is not null)
        {
            _aesNi.Encrypt(nonce, payload, ciphertext, tag, header);
        }
        else if (_aes is not null)
        {
            _aes.Encrypt(nonce, payload, ciphertext, tag, header);
        }
        else
        {
            _chacha!.Encrypt(nonce, payload, ciphertext, tag, header);
        }

        return length;
    }

    /// <summary>Authenticates and decrypts; <paramref name="payload"/> gets datagram.Length - 28 bytes.</summary>
    public bool TryOpen(ReadOnlySpan<byte> datagram, in PacketHeader header, Span<byte> payload)
    {
        var payloadLength = datagram.Length - WireFormat.OverheadBytes;
        Span<byte> nonce = stackalloc byte[12];
        MakeNonce(header.Path, header.PacketNumber, nonce);
        var ciphertext = datagram.Slice(WireFormat.HeaderBytes, payloadLength);
        var tag = datagram.Slice(WireFormat.HeaderBytes + payloadLength, WireFormat.TagBytes);
        if (_aesNi is not null)
        {
            return _aesNi.TryDecrypt(nonce, ciphertext, tag, payload[..payloadLength], datagram[..WireFormat.HeaderBytes]);
        }

        try
        {
            if (_aes is not null)
            {
                _aes.Decrypt(nonce, ciphertext, tag, payload[..payloadLength], datagram[..WireFormat.HeaderBytes]);
            }
            else
            {
                _chacha!.Decrypt(nonce, ciphertext, tag, payload[..payloadLength], datagram[..WireFormat.HeaderBytes]);
            }

            return true;
        }
        catch (AuthenticationTagMismatchException)
        {
            // A forged or corrupted datagram: the caller counts it as AuthFailed.
            return false;
        }
    }

    private void MakeNonce(byte path, ulong packetNumber, Span<byte> nonce)
    {
        _iv.CopyTo(nonce);
        nonce[3] ^= path;
        var pn = BinaryPrimitives.ReadUInt64BigEndian(nonce.Slice(4)) ^ packetNumber;
        BinaryPrimitives.WriteUInt64BigEndian(nonce.Slice(4), pn);
    }

    public void Dispose()
    {
        _aesNi?.Dispose();
        _aes?.Dispose();
        _chacha?.Dispose();
    }
}
