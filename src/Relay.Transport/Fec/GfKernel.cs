using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Relay.Transport.Fec;

/// <summary>The instruction sets a GF(2^8) multiply-accumulate can run on, slowest first.</summary>
public enum GfKernel
{
    Scalar = 0,
    Ssse3 = 1,
    Avx2 = 2,
    Gfni256 = 3,
    Gfni512 = 4,
}

/// <summary>
/// outputs[r][b] = XOR over j of coeff(r, j) * inputs[j][b], for every byte b: the one loop both
/// Reed-Solomon encode and decode spend their time in. GFNI multiplies by a constant with one affine
/// instruction; SSSE3/AVX2 look the product up in two 16-entry nibble tables (the ISA-L method);
/// scalar uses the 64 KiB product table. Tails shorter than a vector run scalar.
/// </summary>
internal static unsafe class GfKernels
{
    public static GfKernel Best { get; } = Detect();

    public static bool IsSupported(GfKernel kernel) => kernel switch
    {
        GfKernel.Scalar => true,
        GfKernel.Ssse3 => Ssse3.IsSupported,
        GfKernel.Avx2 => Avx2.IsSupported,
        GfKernel.Gfni256 => Gfni.V256.IsSupported && Avx2.IsSupported,
        GfKernel.Gfni512 => Gfni.V512.IsSupported && Avx512BW.IsSupported,
        _ => false,
    };

    private static GfKernel Detect()
    {
        for (var k = GfKernel.Gfni512; k > GfKernel.Scalar; k--)
        {
            if (IsSupported(k))
            {
                return k;
            }
        }

        return GfKernel.Scalar;
    }

    // coeffs: outputCount x inputCount coefficients, row-major; affine: the same as GFNI matrices;
    // nibbles: the same as 32-byte nibble tables (SSSE3/AVX2).
    public static void MulAdd(
        GfKernel kernel,
        byte** inputs,
        int inputCount,
        byte** outputs,
        int outputCount,
        int byteCount,
        byte* coeffs,
        ulong* affine,
        byte* nibbles)
    {
        var done = kernel switch
        {
            GfKernel.Gfni512 => Gfni512(inputs, inputCount, outputs, outputCount, byteCount, affine),
            GfKernel.Gfni256 => Gfni256(inputs, inputCount, outputs, outputCount, byteCount, affine),
            GfKernel.Avx2 => Avx2Shuffle(inputs, inputCount, outputs, outputCount, byteCount, nibbles),
            GfKernel.Ssse3 => Ssse3Shuffle(inputs, inputCount, outputs, outputCount, byteCount, nibbles),
            _ => 0,
        };

        if (done < byteCount)
        {
            ScalarRange(inputs, inputCount, outputs, outputCount, done, byteCount, coeffs);
        }
    }

    private static void ScalarRange(byte** inputs, int inputCount, byte** outputs, int outputCount, int from, int to, byte* coeffs)
    {
        for (var r = 0; r < outputCount; r++)
        {
            var output = outputs[r];
            new Span<byte>(output + from, to - from).Clear();
            for (var j = 0; j < inputCount; j++)
            {
                var mul = GaloisField.MulRow(coeffs[(r * inputCount) + j]);
                var input = inputs[j];
                for (var b = from; b < to; b++)
                {
                    output[b] ^= mul[input[b]];
                }
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> Mul512(Vector512<byte> x, ulong* matrix) =>
        Gfni.V512.GaloisFieldAffineTransform(x, Vector512.Create(*matrix).AsByte(), 0);

    private static int Gfni512(byte** inputs, int n, byte** outputs, int outputCount, int byteCount, ulong* affine)
    {
        var end = byteCount & ~63;
        var r = 0;
        for (; r + 4 <= outputCount; r += 4)
        {
            ulong* m0 = affine + (r * n), m1 = m0 + n, m2 = m1 + n, m3 = m2 + n;
            byte* o0 = outputs[r], o1 = outputs[r + 1], o2 = outputs[r + 2], o3 = outputs[r + 3];
            for (var off = 0; off < end; off += 64)
            {
                var x = Vector512.Load(inputs[0] + off);
                var a0 = Mul512(x, m0);
                var a1 = Mul512(x, m1);
                var a2 = Mul512(x, m2);
                var a3 = Mul512(x, m3);
                for (var j = 1; j < n; j++)
                {
                    x = Vector512.Load(inputs[j] + off);
                    a0 ^= Mul512(x, m0 + j);
                    a1 ^= Mul512(x, m1 + j);
                    a2 ^= Mul512(x, m2 + j);
                    a3 ^= Mul512(x, m3 + j);
                }

                a0.Store(o0 + off);
                a1.Store(o1 + off);
                a2.Store(o2 + off);
                a3.Store(o3 + off);
            }
        }

        for (; r + 2 <= outputCount; r += 2)
        {
            ulong* m0 = affine + (r * n), m1 = m0 + n;
            byte* o0 = outputs[r], o1 = outputs[r + 1];
            for (var off = 0; off < end; off += 64)
            {
                var x = Vector512.Load(inputs[0] + off);
                var a0 = Mul512(x, m0);
                var a1 = Mul512(x, m1);
                for (var j = 1; j < n; j++)
                {
                    x = Vector512.Load(inputs[j] + off);
                    a0 ^= Mul512(x, m0 + j);
                    a1 ^= Mul512(x, m1 + j);
                }

                a0.Store(o0 + off);
                a1.Store(o1 + off);
            }
        }

        for (; r < outputCount; r++)
        {
            var m0 = affine + (r * n);
            var o0 = outputs[r];
            for (var off = 0; off < end; off += 64)
            {
                var a0 = Mul512(Vector512.Load(inputs[0] + off), m0);
                for (var j = 1; j < n; j++)
                {
                    a0 ^= Mul512(Vector512.Load(inputs[j] + off), m0 + j);
                }

                a0.Store(o0 + off);
            }
        }

        return end;
    }

    private static int Gfni256(byte** inputs, int n, byte** outputs, int outputCount, int byteCount, ulong* affine)
    {
        var end = byteCount & ~31;
        for (var r = 0; r < outputCount; r++)
        {
            var m0 = affine + (r * n);
            var o0 = outputs[r];
            for (var off = 0; off < end; off += 32)
            {
                var acc = Vector256<byte>.Zero;
                for (var j = 0; j < n; j++)
                {
                    acc ^= Gfni.V256.GaloisFieldAffineTransform(Vector256.Load(inputs[j] + off), Vector256.Create(m0[j]).AsByte(), 0);
                }

                acc.Store(o0 + off);
            }
        }

        return end;
    }

    private static int Avx2Shuffle(byte** inputs, int n, byte** outputs, int outputCount, int byteCount, byte* nibbles)
    {
        var end = byteCount & ~31;
        var mask = Vector256.Create((byte)0x0F);
        for (var r = 0; r < outputCount; r++)
        {
            var tables = nibbles + (r * n * 32);
            var o0 = outputs[r];
            for (var off = 0; off < end; off += 32)
            {
                var acc = Vector256<byte>.Zero;
                for (var j = 0; j < n; j++)
                {
                    var x = Vector256.Load(inputs[j] + off);
                    var lo = x & mask;
                    var hi = Avx2.ShiftRightLogical(x.AsUInt16(), 4).AsByte() & mask;
                    var tLo = Vector256.Create(Vector128.Load(tables + (j * 32)));
                    var tHi = Vector256.Create(Vector128.Load(tables + (j * 32) + 16));
                    acc ^= Avx2.Shuffle(tLo, lo) ^ Avx2.Shuffle(tHi, hi);
                }

                acc.Store(o0 + off);
            }
        }

        return end;
    }

    private static int Ssse3Shuffle(byte** inputs, int n, byte** outputs, int outputCount, int byteCount, byte* nibbles)
    {
        var end = byteCount & ~15;
        var mask = Vector128.Create((byte)0x0F);
        for (var r = 0; r < outputCount; r++)
        {
            var tables = nibbles + (r * n * 32);
            var o0 = outputs[r];
            for (var off = 0; off < end; off += 16)
            {
                var acc = Vector128<byte>.Zero;
                for (var j = 0; j < n; j++)
                {
                    var x = Vector128.Load(inputs[j] + off);
                    var lo = x & mask;
                    var hi = Sse2.ShiftRightLogical(x.AsUInt16(), 4).AsByte() & mask;
                    acc ^= Ssse3.Shuffle(Vector128.Load(tables + (j * 32)), lo) ^ Ssse3.Shuffle(Vector128.Load(tables + (j * 32) + 16), hi);
                }

                acc.Store(o0 + off);
            }
        }

        return end;
    }
}
