using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using System.Security.Cryptography;
using AesNi = System.Runtime.Intrinsics.X86.Aes;
using AesGcm = System.Security.Cryptography.AesGcm;

namespace Relay.Transport.Crypto;

/// <summary>
/// AES-256-GCM (NIST SP 800-38D) with a 96-bit nonce and a 16-byte tag, on the CPU's AES-NI and
/// carry-less multiply instructions. It exists because <see cref="AesGcm"/> goes through OpenSSL's
/// EVP layer, whose fixed cost per call (about 1 µs here) is larger than the cipher work on a
/// 1.2 KB datagram. Output is bit-for-bit that of <see cref="AesGcm"/> (the tests compare them on
/// random inputs); <see cref="PacketProtector"/> falls back to <see cref="AesGcm"/> where
/// <see cref="IsSupported"/> is false.
/// </summary>
/// <remarks>
/// Constant time: AES rounds and GHASH are single instructions with data-independent timing, and
/// the tag is compared with <see cref="CryptographicOperations.FixedTimeEquals"/>. Open verifies
/// the tag before it writes any plaintext. Not thread-safe for Dispose; Seal and Open keep no
/// per-call state and may run concurrently.
/// <para>
/// GHASH works in the byte-reflected domain: a block loaded with its bytes reversed holds the
/// coefficient of x^i at bit 127 - i, so a carry-less product of two such values is the field
/// product times x. The hash key is stored pre-divided by x (H·x⁻¹), which cancels that factor,
/// and eight blocks are folded per reduction with the powers H¹..H⁸ (each also times x⁻¹).
/// </para>
/// </remarks>
internal sealed class AesGcmIntrinsics : IDisposable
{
    public const int KeyBytes = 32;
    public const int NonceBytes = 12;
    public const int TagBytes = 16;
    private const int Rounds = 14;
    private const int Lanes = 8;

    // Round keys 0..14, then the hash key powers H^1..H^8 (byte-reflected, times x^-1).
    private readonly Vector128<byte>[] _keys = new Vector128<byte>[Rounds + 1 + Lanes];

    // The same powers four to a 512-bit vector, [H^8, H^7, H^6, H^5] and [H^4, H^3, H^2, H^1] (lane 0
    // first), for the VPCLMULQDQ path where the CPU has it.
    private readonly Vector512<ulong>[] _powers512 = new Vector512<ulong>[2];

    private readonly bool _wide;

    /// <param name="key">The 32-byte key.</param>
    /// <param name="allowWide">Use 512-bit carry-less multiplies where the CPU has them (tests turn it off to cover the 128-bit path).</param>
    public AesGcmIntrinsics(ReadOnlySpan<byte> key, bool allowWide = true)
    {
        _wide = allowWide && Pclmulqdq.V512.IsSupported && Avx512BW.IsSupported;
        if (!IsSupported)
        {
            throw new PlatformNotSupportedException("AES-NI and PCLMULQDQ are required");
        }

        if (key.Length != KeyBytes)
        {
            throw new ArgumentException($"an AES-256 key is {KeyBytes} bytes, not {key.Length}", nameof(key));
        }

        ExpandKey(key, _keys);
        var h = EncryptBlock(Vector128<byte>.Zero);
        var power = DivideByX(Reflect(h).AsUInt64());
        var h1 = power;
        _keys[Rounds + 1] = power.AsByte();
        for (var i = 1; i < Lanes; i++)
        {
            power = Multiply(power, h1);
            _keys[Rounds + 1 + i] = power.AsByte();
        }

        _powers512[0] = Vector512.Create(Vector256.Create(Power(8), Power(7)), Vector256.Create(Power(6), Power(5)));
        _powers512[1] = Vector512.Create(Vector256.Create(Power(4), Power(3)), Vector256.Create(Power(2), Power(1)));
    }

    private Vector128<ulong> Power(int n) => _keys[Rounds + n].AsUInt64();

    /// <summary>True where the instructions this class needs exist (x86-64 with AES-NI, PCLMULQDQ, SSSE3).</summary>
    public static bool IsSupported => AesNi.IsSupported && Pclmulqdq.IsSupported && Ssse3.IsSupported;

    /// <summary>Encrypts <paramref name="plaintext"/> into <paramref name="ciphertext"/> (same length) and writes the tag.</summary>
    public void Encrypt(ReadOnlySpan<byte> nonce, ReadOnlySpan<byte> plaintext, Span<byte> ciphertext, Span<byte> tag, ReadOnlySpan<byte> associatedData)
    {
        CheckArguments(nonce, plaintext.Length, ciphertext.Length, tag.Length);
        var j0 = CounterBlock(nonce, 1);
        Ctr(nonce, plaintext, ciphertext);
        var hash = Ghash(associatedData, ciphertext);
        var t = Sse2.Xor(EncryptBlock(j0), hash);
        t.StoreUnsafe(ref MemoryMarshal.GetReference(tag));
    }

    /// <summary>
    /// Checks the tag, then decrypts. Returns false, with <paramref name="plaintext"/> cleared, when
    /// the tag does not match.
    /// </summary>
    public bool TryDecrypt(ReadOnlySpan<byte> nonce, ReadOnlySpan<byte> ciphertext, ReadOnlySpan<byte> tag, Span<byte> plaintext, ReadOnlySpan<byte> associatedData)
    {
        CheckArguments(nonce, ciphertext.Length, plaintext.Length, tag.Length);
        var j0 = CounterBlock(nonce, 1);
        var hash = Ghash(associatedData, ciphertext);
        Span<byte> expected = stackalloc byte[TagBytes];
        Sse2.Xor(EncryptBlock(j0), hash).StoreUnsafe(ref MemoryMarshal.GetReference(expected));
        if (!CryptographicOperations.FixedTimeEquals(expected, tag))
        {
            plaintext[..ciphertext.Length].Clear();
            return false;
        }

        Ctr(nonce, ciphertext, plaintext);
        return true;
    }

    public void Dispose()
    {
        CryptographicOperations.ZeroMemory(MemoryMarshal.AsBytes(_keys.AsSpan()));
        CryptographicOperations.ZeroMemory(MemoryMarshal.AsBytes(_powers512.AsSpan()));
    }

    private static void CheckArguments(ReadOnlySpan<byte> nonce, int inputLength, int outputLength, int tagLength)
    {
        if (nonce.Length != NonceBytes)
        {
            throw new ArgumentException($"the nonce is {NonceBytes} bytes, not {nonce.Length}", nameof(nonce));
        }

        if (outputLength != inputLength)
        {
            throw new ArgumentException("input and output differ in length", nameof(outputLength));
        }

        if (tagLength != TagBytes)
        {
            throw new ArgumentException($"the tag is {TagBytes} bytes, not {tagLength}", nameof(tagLength));
        }
    }

    // ---- AES-256 ----

    private static void ExpandKey(ReadOnlySpan<byte> key, Vector128<byte>[] keys)
    {
        var a = Vector128.Create(key[..16]);
        var b = Vector128.Create(key[16..]);
        keys[0] = a;
        keys[1] = b;
        ReadOnlySpan<byte> rcon = [0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40];
        for (var i = 0; i < rcon.Length; i++)
        {
            a = Sse2.Xor(Spread(a), Sse2.Shuffle(Assist(b, rcon[i]).AsUInt32(), 0xFF).AsByte());
            keys[2 + (2 * i)] = a;
            if (i == rcon.Length - 1)
            {
                break;
            }

            b = Sse2.Xor(Spread(b), Sse2.Shuffle(AesNi.KeygenAssist(a, 0).AsUInt32(), 0xAA).AsByte());
            keys[3 + (2 * i)] = b;
        }
    }

    // KeygenAssist's round constant must be a compile-time constant for the JIT to emit the
    // instruction directly; the seven AES-256 constants are spelled out.
    private static Vector128<byte> Assist(Vector128<byte> b, byte rcon) => rcon switch
    {
        0x01 => AesNi.KeygenAssist(b, 0x01),
        0x02 => AesNi.KeygenAssist(b, 0x02),
        0x04 => AesNi.KeygenAssist(b, 0x04),
        0x08 => AesNi.KeygenAssist(b, 0x08),
        0x10 => AesNi.KeygenAssist(b, 0x10),
        0x20 => AesNi.KeygenAssist(b, 0x20),
        _ => AesNi.KeygenAssist(b, 0x40),
    };

    // w0, w0^w1, w0^w1^w2, w0^w1^w2^w3: the running xor of the previous round key's words.
    private static Vector128<byte> Spread(Vector128<byte> k)
    {
        k = Sse2.Xor(k, Sse2.ShiftLeftLogical128BitLane(k, 4));
        k = Sse2.Xor(k, Sse2.ShiftLeftLogical128BitLane(k, 4));
        return Sse2.Xor(k, Sse2.ShiftLeftLogical128BitLane(k, 4));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private Vector128<byte> EncryptBlock(Vector128<byte> block)
    {
        var k = _keys;
        var s = Sse2.Xor(block, k[0]);
        for (var r = 1; r < Rounds; r++)
        {
            s = AesNi.Encrypt(s, k[r]);
        }

        return AesNi.EncryptLast(s, k[Rounds]);
    }

    private static Vector128<byte> CounterBlock(ReadOnlySpan<byte> nonce, uint counter)
    {
        var n = MemoryMarshal.Cast<byte, uint>(nonce);
        return Vector128.Create(n[0], n[1], n[2], BinaryPrimitives.ReverseEndianness(counter)).AsByte();
    }

    /// <summary>Counter mode from counter 2 (counter 1 is the tag's mask), eight blocks per round trip through the key schedule.</summary>
    private void Ctr(ReadOnlySpan<byte> nonce, ReadOnlySpan<byte> input, Span<byte> output)
    {
        var k = _keys;
        var n = MemoryMarshal.Cast<byte, uint>(nonce);
        var prefix = Vector128.Create(n[0], n[1], n[2], 0);
        uint counter = 2;
        ref var src = ref MemoryMarshal.GetReference(input);
        ref var dst = ref MemoryMarshal.GetReference(output);
        nuint offset = 0;
        var length = (nuint)input.Length;
        while (length - offset >= Lanes * 16)
        {
            var s0 = Sse2.Xor(prefix.WithElement(3, BinaryPrimitives.ReverseEndianness(counter)).AsByte(), k[0]);
            var s1 = Sse2.Xor(prefix.WithElement(3, BinaryPrimitives.ReverseEndianness(counter + 1)).AsByte(), k[0]);
            var s2 = Sse2.Xor(prefix.WithElement(3, BinaryPrimitives.ReverseEndianness(counter + 2)).AsByte(), k[0]);
            var s3 = Sse2.Xor(prefix.WithElement(3, BinaryPrimitives.ReverseEndianness(counter + 3)).AsByte(), k[0]);
            var s4 = Sse2.Xor(prefix.WithElement(3, BinaryPrimitives.ReverseEndianness(counter + 4)).AsByte(), k[0]);
            var s5 = Sse2.Xor(prefix.WithElement(3, BinaryPrimitives.ReverseEndianness(counter + 5)).AsByte(), k[0]);
            var s6 = Sse2.Xor(prefix.WithElement(3, BinaryPrimitives.ReverseEndianness(counter + 6)).AsByte(), k[0]);
            var s7 = Sse2.Xor(prefix.WithElement(3, BinaryPrimitives.ReverseEndianness(counter + 7)).AsByte(), k[0]);
            counter += Lanes;
            for (var r = 1; r < Rounds; r++)
            {
                var rk = k[r];
                s0 = AesNi.Encrypt(s0, rk);
                s1 = AesNi.Encrypt(s1, rk);
                s2 = AesNi.Encrypt(s2, rk);
                s3 = AesNi.Encrypt(s3, rk);
                s4 = AesNi.Encrypt(s4, rk);
                s5 = AesNi.Encrypt(s5, rk);
                s6 = AesNi.Encrypt(s6, rk);
                s7 = AesNi.Encrypt(s7, rk);
            }

            var last = k[Rounds];
            Xor16(AesNi.EncryptLast(s0, last), ref src, ref dst, offset);
            Xor16(AesNi.EncryptLast(s1, last), ref src, ref dst, offset + 16);
            Xor16(AesNi.EncryptLast(s2, last), ref src, ref dst, offset + 32);
            Xor16(AesNi.EncryptLast(s3, last), ref src, ref dst, offset + 48);
            Xor16(AesNi.EncryptLast(s4, last), ref src, ref dst, offset + 64);
            Xor16(AesNi.EncryptLast(s5, last), ref src, ref dst, offset + 80);
            Xor16(AesNi.EncryptLast(s6, last), ref src, ref dst, offset + 96);
            Xor16(AesNi.EncryptLast(s7, last), ref src, ref dst, offset + 112);
            offset += Lanes * 16;
        }

        while (length - offset >= 16)
        {
            Xor16(EncryptBlock(prefix.WithElement(3, BinaryPrimitives.ReverseEndianness(counter++)).AsByte()), ref src, ref dst, offset);
            offset += 16;
        }

        if (offset < length)
        {
            Span<byte> pad = stackalloc byte[16];
            EncryptBlock(prefix.WithElement(3, BinaryPrimitives.ReverseEndianness(counter)).AsByte()).StoreUnsafe(ref MemoryMarshal.GetReference(pad));
            for (var i = 0; offset + (nuint)i < length; i++)
            {
                Unsafe.Add(ref dst, offset + (nuint)i) = (byte)(Unsafe.Add(ref src, offset + (nuint)i) ^ pad[i]);
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Xor16(Vector128<byte> keystream, ref byte src, ref byte dst, nuint offset) =>
        Sse2.Xor(keystream, Vector128.LoadUnsafe(ref src, offset)).StoreUnsafe(ref dst, offset);

    // ---- GHASH ----

    private Vector128<byte> Ghash(ReadOnlySpan<byte> associatedData, ReadOnlySpan<byte> ciphertext)
    {
        var y = Vector128<ulong>.Zero;
        y = Absorb(y, associatedData);
        y = Absorb(y, ciphertext);
        var lengths = Vector128.Create((ulong)ciphertext.Length * 8, (ulong)associatedData.Length * 8);
        y = Multiply(Sse2.Xor(y, lengths), _keys[Rounds + 1].AsUInt64());
        return Reflect(y.AsByte());
    }

    /// <summary>Hashes <paramref name="data"/>, zero-padded to whole blocks, into the running value <paramref name="y"/>.</summary>
    private Vector128<ulong> Absorb(Vector128<ulong> y, ReadOnlySpan<byte> data)
    {
        ref var src = ref MemoryMarshal.GetReference(data);
        var k = _keys;
        nuint offset = 0;
        var length = (nuint)data.Length;
        if (_wide)
        {
            var high = _powers512[0];
            var low = _powers512[1];
            var mask = Vector512.Create((byte)15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
            while (length - offset >= Lanes * 16)
            {
                // The same fold as below, four blocks per instruction.
                var a = Avx512BW.Shuffle(Vector512.LoadUnsafe(ref src, offset), mask).AsUInt64();
                var b = Avx512BW.Shuffle(Vector512.LoadUnsafe(ref src, offset + 64), mask).AsUInt64();
                a = Avx512F.Xor(a, Vector512.Create(Vector256.Create(y, Vector128<ulong>.Zero), Vector256<ulong>.Zero));
                var lo512 = Avx512F.Xor(Pclmulqdq.V512.CarrylessMultiply(a, high, 0x00), Pclmulqdq.V512.CarrylessMultiply(b, low, 0x00));
                var hi512 = Avx512F.Xor(Pclmulqdq.V512.CarrylessMultiply(a, high, 0x11), Pclmulqdq.V512.CarrylessMultiply(b, low, 0x11));
                var mid512 = Avx512F.Xor(
                    Avx512F.Xor(Pclmulqdq.V512.CarrylessMultiply(a, high, 0x01), Pclmulqdq.V512.CarrylessMultiply(a, high, 0x10)),
                    Avx512F.Xor(Pclmulqdq.V512.CarrylessMultiply(b, low, 0x01), Pclmulqdq.V512.CarrylessMultiply(b, low, 0x10)));
                y = Reduce(Fold(lo512), Fold(mid512), Fold(hi512));
                offset += Lanes * 16;
            }
        }

        while (length - offset >= Lanes * 16)
        {
            // y' = (y + x0)·H^8 + x1·H^7 + ... + x7·H^1, reduced once.
            var x0 = Sse2.Xor(y, Load(ref src, offset));
            var lo = Vector128<ulong>.Zero;
            var mid = Vector128<ulong>.Zero;
            var hi = Vector128<ulong>.Zero;
            Accumulate(x0, k[Rounds + 8].AsUInt64(), ref lo, ref mid, ref hi);
            Accumulate(Load(ref src, offset + 16), k[Rounds + 7].AsUInt64(), ref lo, ref mid, ref hi);
            Accumulate(Load(ref src, offset + 32), k[Rounds + 6].AsUInt64(), ref lo, ref mid, ref hi);
            Accumulate(Load(ref src, offset + 48), k[Rounds + 5].AsUInt64(), ref lo, ref mid, ref hi);
            Accumulate(Load(ref src, offset + 64), k[Rounds + 4].AsUInt64(), ref lo, ref mid, ref hi);
            Accumulate(Load(ref src, offset + 80), k[Rounds + 3].AsUInt64(), ref lo, ref mid, ref hi);
            Accumulate(Load(ref src, offset + 96), k[Rounds + 2].AsUInt64(), ref lo, ref mid, ref hi);
            Accumulate(Load(ref src, offset + 112), k[Rounds + 1].AsUInt64(), ref lo, ref mid, ref hi);
            y = Reduce(lo, mid, hi);
            offset += Lanes * 16;
        }

        var h1 = k[Rounds + 1].AsUInt64();
        while (length - offset >= 16)
        {
            y = Multiply(Sse2.Xor(y, Load(ref src, offset)), h1);
            offset += 16;
        }

        if (offset < length)
        {
            Span<byte> pad = stackalloc byte[16];
            pad.Clear();
            data[(int)offset..].CopyTo(pad);
            y = Multiply(Sse2.Xor(y, Load(ref MemoryMarshal.GetReference(pad), 0)), h1);
        }

        return y;
    }

    /// <summary>The xor of a 512-bit vector's four 128-bit lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<ulong> Fold(Vector512<ulong> v)
    {
        var half = Avx2.Xor(v.GetLower(), v.GetUpper());
        return Sse2.Xor(half.GetLower(), half.GetUpper());
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<ulong> Load(ref byte src, nuint offset) => Reflect(Vector128.LoadUnsafe(ref src, offset)).AsUInt64();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<byte> Reflect(Vector128<byte> v) =>
        Ssse3.Shuffle(v, Vector128.Create((byte)15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0));

    /// <summary>Adds the unreduced 256-bit product a·b to (hi, mid, lo); mid is the cross term, folded in at reduction.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Accumulate(Vector128<ulong> a, Vector128<ulong> b, ref Vector128<ulong> lo, ref Vector128<ulong> mid, ref Vector128<ulong> hi)
    {
        lo = Sse2.Xor(lo, Pclmulqdq.CarrylessMultiply(a, b, 0x00));
        hi = Sse2.Xor(hi, Pclmulqdq.CarrylessMultiply(a, b, 0x11));
        mid = Sse2.Xor(mid, Sse2.Xor(Pclmulqdq.CarrylessMultiply(a, b, 0x01), Pclmulqdq.CarrylessMultiply(a, b, 0x10)));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<ulong> Multiply(Vector128<ulong> a, Vector128<ulong> b)
    {
        var lo = Vector128<ulong>.Zero;
        var mid = Vector128<ulong>.Zero;
        var hi = Vector128<ulong>.Zero;
        Accumulate(a, b, ref lo, ref mid, ref hi);
        return Reduce(lo, mid, hi);
    }

    /// <summary>Folds the 256-bit product [hi:lo] (with its cross term) modulo x^128 + x^7 + x^2 + x + 1, reflected.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<ulong> Reduce(Vector128<ulong> lo, Vector128<ulong> mid, Vector128<ulong> hi)
    {
        lo = Sse2.Xor(lo, Sse2.ShiftLeftLogical128BitLane(mid.AsByte(), 8).AsUInt64());
        hi = Sse2.Xor(hi, Sse2.ShiftRightLogical128BitLane(mid.AsByte(), 8).AsUInt64());

        // Two folds of 64 bits each by the reflected polynomial's low terms (x^7 + x^2 + x + 1 as 0xC2 << 56).
        var poly = Vector128.Create(1UL, 0xC200000000000000UL);
        var t = Pclmulqdq.CarrylessMultiply(lo, poly, 0x10);
        lo = Sse2.Xor(Sse2.Shuffle(lo.AsUInt32(), 0x4E).AsUInt64(), t);
        t = Pclmulqdq.CarrylessMultiply(lo, poly, 0x10);
        lo = Sse2.Xor(Sse2.Shuffle(lo.AsUInt32(), 0x4E).AsUInt64(), t);
        return Sse2.Xor(lo, hi);
    }

    /// <summary>H·x⁻¹ in the reflected domain: a one-bit shift towards the top, folding the carry back in.</summary>
    private static Vector128<ulong> DivideByX(Vector128<ulong> h)
    {
        var carry = (h.GetElement(1) >> 63) != 0;
        var high = (h.GetElement(1) << 1) | (h.GetElement(0) >> 63);
        var low = h.GetElement(0) << 1;
        var shifted = Vector128.Create(low, high);
        return carry ? Sse2.Xor(shifted, Vector128.Create(1UL, 0xC200000000000000UL)) : shifted;
    }
}
