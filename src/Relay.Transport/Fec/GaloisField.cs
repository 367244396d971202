namespace Relay.Transport.Fec;

/// <summary>
/// Arithmetic in GF(2^8) with the polynomial x^8 + x^4 + x^3 + x^2 + 1 (0x11D), the field
/// ISA-L and most storage erasure codes use. Tables are built once; nothing here allocates after that.
/// </summary>
internal static class GaloisField
{
    public const int Polynomial = 0x11D;

    private static readonly byte[] _exp = new byte[512];
    private static readonly byte[] _log = new byte[256];
    private static readonly byte[] _mul = new byte[256 * 256];

    static GaloisField()
    {
        var x = 1;
        for (var i = 0; i < 255; i++)
        {
            _exp[i] = (byte)x;
            _log[x] = (byte)i;
            x <<= 1;
            if ((x & 0x100) != 0)
            {
                x ^= Polynomial;
            }
        }

        for (var i = 255; i < _exp.Length; i++)
        {
            _exp[i] = _exp[i - 255];
        }

        for (var a = 0; a < 256; a++)
        {
            for (var b = 0; b < 256; b++)
            {
                _mul[(a << 8) | b] = MulSlow((byte)a, (byte)b);
            }
        }
    }

    /// <summary>Row <paramref name="a"/> of the full multiplication table: row[b] = a * b.</summary>
    public static ReadOnlySpan<byte> MulRow(byte a) => _mul.AsSpan(a << 8, 256);

    public static byte Mul(byte a, byte b) => _mul[(a << 8) | b];

    public static byte Inverse(byte a)
    {
        if (a == 0)
        {
            throw new DivideByZeroException("0 has no inverse in GF(2^8).");
        }

        return _exp[255 - _log[a]];
    }

    public static byte Div(byte a, byte b) => a == 0 ? (byte)0 : _exp[_log[a] + 255 - _log[b]];

    private static byte MulSlow(byte a, byte b)
    {
        if (a == 0 || b == 0)
        {
            return 0;
        }

        return _exp[_log[a] + _log[b]];
    }

    /// <summary>
    /// The 8x8 bit matrix of "multiply by <paramref name="c"/>" in the layout GF2P8AFFINEQB expects:
    /// byte (7 - i) of the qword selects the input bits whose images have output bit i set.
    /// </summary>
    public static ulong AffineMatrix(byte c)
    {
        ulong matrix = 0;
        for (var outBit = 0; outBit < 8; outBit++)
        {
            var row = 0;
            for (var inBit = 0; inBit < 8; inBit++)
            {
                if ((Mul(c, (byte)(1 << inBit)) & (1 << outBit)) != 0)
                {
                    row |= 1 << inBit;
                }
            }

            matrix |= (ulong)row << (8 * (7 - outBit));
        }

        return matrix;
    }

    /// <summary>
    /// Fills the 32-byte nibble table of <paramref name="c"/>: [0..16) = c * lo, [16..32) = c * (hi shifted left by 4).
    /// </summary>
    public static void NibbleTables(byte c, Span<byte> destination)
    {
        for (var i = 0; i < 16; i++)
        {
            destination[i] = Mul(c, (byte)i);
            destination[16 + i] = Mul(c, (byte)(i << 4));
        }
    }

    /// <summary>
    /// Inverts the n x n matrix in <paramref name="matrix"/> (row-major) into <paramref name="inverse"/>
    /// by Gauss-Jordan elimination. <paramref name="matrix"/> is destroyed. Returns false when singular.
    /// </summary>
    public static bool TryInvert(Span<byte> matrix, Span<byte> inverse, int n)
    {
        inverse[..(n * n)].Clear();
        for (var i = 0; i < n; i++)
        {
            inverse[(i * n) + i] = 1;
        }

        for (var col = 0; col < n; col++)
        {
            var pivot = col;
            while (pivot < n && matrix[(pivot * n) + col] == 0)
            {
                pivot++;
            }

            if (pivot == n)
            {
                return false;
            }

            if (pivot != col)
            {
                SwapRows(matrix, n, pivot, col);
                SwapRows(inverse, n, pivot, col);
            }

            var scale = Inverse(matrix[(col * n) + col]);
            ScaleRow(matrix.Slice(col * n, n), scale);
            ScaleRow(inverse.Slice(col * n, n), scale);

            for (var row = 0; row < n; row++)
            {
                if (row == col)
                {
                    continue;
                }

                var factor = matrix[(row * n) + col];
                if (factor == 0)
                {
                    continue;
                }

                AddScaledRow(matrix.Slice(row * n, n), matrix.Slice(col * n, n), factor);
                AddScaledRow(inverse.Slice(row * n, n), inverse.Slice(col * n, n), factor);
            }
        }

        return true;
    }

    private static void SwapRows(Span<byte> m, int n, int a, int b)
    {
        var ra = m.Slice(a * n, n);
        var rb = m.Slice(b * n, n);
        for (var i = 0; i < n; i++)
        {
            (ra[i], rb[i]) = (rb[i], ra[i]);
        }
    }

    private static void ScaleRow(Span<byte> row, byte scale)
    {
        var mul = MulRow(scale);
        for (var i = 0; i < row.Length; i++)
        {
            row[i] = mul[row[i]];
        }
    }

    private static void AddScaledRow(Span<byte> target, ReadOnlySpan<byte> source, byte factor)
    {
        var mul = MulRow(factor);
        for (var i = 0; i < target.Length; i++)
        {
            target[i] ^= mul[source[i]];
        }
    }
}
