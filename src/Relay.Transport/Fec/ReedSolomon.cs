namespace Relay.Transport.Fec;

/// <summary>
/// Systematic Reed-Solomon erasure code over GF(2^8): k data shards, m parity shards, k + m &lt;= 255,
/// any k of the k + m shards rebuild the data. The parity rows form a Cauchy matrix (row k + i,
/// column j is 1 / ((k + i) xor j)), so every k x k submatrix of [I; C] is invertible.
/// </summary>
/// <remarks>
/// Shards are contiguous: shard i occupies bytes [i * shardSize, (i + 1) * shardSize) of its span.
/// Encode and decode allocate nothing. <see cref="Encode"/> is thread-safe; <see cref="TryDecode"/>
/// uses per-instance scratch (and caches the decode matrix of the last erasure pattern), so one
/// instance must not decode on two threads at once.
/// </remarks>
public sealed unsafe class ReedSolomon
{
    public const int MaxTotalShards = 255;

    private readonly byte[] _parityMatrix;
    private readonly ulong[] _parityAffine;
    private readonly byte[] _parityNibbles;

    // Decode scratch, sized for the worst case (k missing data shards).
    private readonly byte[] _subMatrix;
    private readonly byte[] _inverse;
    private readonly byte[] _decodeCoeffs;
    private readonly ulong[] _decodeAffine;
    private readonly byte[] _decodeNibbles;
    private readonly bool[] _cachedPresent;
    private readonly byte[] _chosen;
    private readonly byte[] _missing;
    private int _chosenCount;
    private int _missingCount;
    private bool _cacheValid;

    public ReedSolomon(int dataShards, int parityShards)
        : this(dataShards, parityShards, GfKernels.Best)
    {
    }

    internal ReedSolomon(int dataShards, int parityShards, GfKernel kernel)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(dataShards, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(parityShards);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(dataShards + parityShards, MaxTotalShards, nameof(parityShards));
        if (!GfKernels.IsSupported(kernel))
        {
            throw new PlatformNotSupportedException($"GF kernel {kernel} is not supported by this CPU.");
        }

        DataShards = dataShards;
        ParityShards = parityShards;
        Kernel = kernel;

        int k = dataShards, m = parityShards;
        _parityMatrix = new byte[m * k];
        for (var i = 0; i < m; i++)
        {
            for (var j = 0; j < k; j++)
            {
                _parityMatrix[(i * k) + j] = GaloisField.Inverse((byte)((k + i) ^ j));
            }
        }

        _parityAffine = new ulong[m * k];
        _parityNibbles = new byte[m * k * 32];
        Expand(_parityMatrix, _parityAffine, _parityNibbles, m * k);

        _subMatrix = new byte[k * k];
        _inverse = new byte[k * k];
        _decodeCoeffs = new byte[k * k];
        _decodeAffine = new ulong[k * k];
        _decodeNibbles = new byte[k * k * 32];
        _cachedPresent = new bool[k + m];
        _chosen = new byte[k];
        _missing = new byte[k];
    }

    public int DataShards { get; }

    public int ParityShards { get; }

    public int TotalShards => DataShards + ParityShards;

    internal GfKernel Kernel { get; }

    /// <summary>
    /// Computes the m parity shards (m * shardSize bytes of <paramref name="parity"/>, overwritten)
    /// of the k data shards (k * shardSize bytes of <paramref name="data"/>).
    /// </summary>
    public void Encode(ReadOnlySpan<byte> data, Span<byte> parity, int shardSize)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(shardSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(data.Length, DataShards * shardSize, nameof(data));
        ArgumentOutOfRangeException.ThrowIfLessThan(parity.Length, ParityShards * shardSize, nameof(parity));
        if (ParityShards == 0)
        {
            return;
        }

        int k = DataShards, m = ParityShards;
        var inputs = stackalloc byte*[k];
        var outputs = stackalloc byte*[m];
        fixed (byte* d = data)
        fixed (byte* p = parity)
        fixed (byte* coeffs = _parityMatrix)
        fixed (ulong* affine = _parityAffine)
        fixed (byte* nibbles = _parityNibbles)
        {
            for (var j = 0; j < k; j++)
            {
                inputs[j] = d + (j * shardSize);
            }

            for (var i = 0; i < m; i++)
            {
                outputs[i] = p + (i * shardSize);
            }

            GfKernels.MulAdd(Kernel, inputs, k, outputs, m, shardSize, coeffs, affine, nibbles);
        }
    }

    /// <summary>
    /// Rebuilds the missing data shards in place from any k present shards. Parity shards that were
    /// missing are left as they are. Returns false when fewer than k shards are present.
    /// <paramref name="shards"/> holds (k + m) * shardSize bytes, data shards first;
    /// <paramref name="present"/> holds k + m flags, true where a shard's bytes are valid.
    /// </summary>
    public bool TryDecode(Span<byte> shards, ReadOnlySpan<bool> present, int shardSize)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(shardSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(shards.Length, TotalShards * shardSize, nameof(shards));
        ArgumentOutOfRangeException.ThrowIfLessThan(present.Length, TotalShards, nameof(present));
        int k = DataShards, total = TotalShards;

        var dataMissing = false;
        var presentCount = 0;
        for (var i = 0; i < total; i++)
        {
            if (present[i])
            {
                presentCount++;
            }
            else if (i < k)
            {
                dataMissing = true;
            }
        }

        if (!dataMissing)
        {
            return true;
        }

        if (presentCount < k)
        {
            return false;
        }

        if (!_cacheValid || !present[..total].SequenceEqual(_cachedPresent))
        {
            if (!PrepareDecode(present))
            {
                return false;
            }
        }

        var inputs = stackalloc byte*[k];
        var outputs = stackalloc byte*[_missingCount];
        fixed (byte* s = shards)
        fixed (byte* coeffs = _decodeCoeffs)
        fixed (ulong* affine = _decodeAffine)
        fixed (byte* nibbles = _decodeNibbles)
        {
            for (var j = 0; j < _chosenCount; j++)
            {
                inputs[j] = s + (_chosen[j] * shardSize);
            }

            for (var i = 0; i < _missingCount; i++)
            {
                outputs[i] = s + (_missing[i] * shardSize);
            }

            GfKernels.MulAdd(Kernel, inputs, k, outputs, _missingCount, shardSize, coeffs, affine, nibbles);
        }

        return true;
    }

    private bool PrepareDecode(ReadOnlySpan<bool> present)
    {
        int k = DataShards, total = TotalShards;
        _cacheValid = false;
        _chosenCount = 0;
        _missingCount = 0;
        for (var i = 0; i < total && _chosenCount < k; i++)
        {
            if (present[i])
            {
                _chosen[_chosenCount++] = (byte)i;
            }
        }

        for (var i = 0; i < k; i++)
        {
            if (!present[i])
            {
                _missing[_missingCount++] = (byte)i;
            }
        }

        // Rows of the generator matrix [I; C] for the chosen shards.
        var sub = _subMatrix.AsSpan(0, k * k);
        sub.Clear();
        for (var r = 0; r < k; r++)
        {
            int idx = _chosen[r];
            if (idx < k)
            {
                sub[(r * k) + idx] = 1;
            }
            else
            {
                _parityMatrix.AsSpan((idx - k) * k, k).CopyTo(sub.Slice(r * k, k));
            }
        }

        if (!GaloisField.TryInvert(sub, _inverse, k))
        {
            return false;
        }

        // data[t] = sum_j inverse[t][j] * chosen[j]; keep the rows of the missing data shards.
        for (var i = 0; i < _missingCount; i++)
        {
            _inverse.AsSpan(_missing[i] * k, k).CopyTo(_decodeCoeffs.AsSpan(i * k, k));
        }

        Expand(_decodeCoeffs, _decodeAffine, _decodeNibbles, _missingCount * k);
        present[..total].CopyTo(_cachedPresent);
        _cacheValid = true;
        return true;
    }

    private static void Expand(ReadOnlySpan<byte> coeffs, Span<ulong> affine, Span<byte> nibbles, int count)
    {
        for (var i = 0; i < count; i++)
        {
            affine[i] = GaloisField.AffineMatrix(coeffs[i]);
            GaloisField.NibbleTables(coeffs[i], nibbles.Slice(i * 32, 32));
        }
    }
}
