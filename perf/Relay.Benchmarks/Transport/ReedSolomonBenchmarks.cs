using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using Relay.Transport.Fec;

namespace Relay.Benchmarks.Transport;

/// <summary>
/// Reed-Solomon encode and decode, Relay.Transport against ISA-L 2.30 (libisal2) on the same buffers in
/// the same run. Decode rebuilds m lost data shards (the worst case) with the decode matrix prepared
/// once, for both. Throughput = k x ShardBytes / time.
/// </summary>
[MemoryDiagnoser]
public unsafe class ReedSolomonBenchmarks
{
    private ReedSolomon _codec = null!;
    private byte* _shards;
    private byte* _isaShards;
    private byte* _isaEncodeTables;
    private byte* _isaDecodeTables;
    private byte** _isaData;
    private byte** _isaCoding;
    private byte** _isaSurvivors;
    private byte** _isaRebuilt;
    private bool[] _present = null!;

    [Params("4+2", "10+4")]
    public string Code { get; set; } = "4+2";

    [Params(1024, 8192)]
    public int ShardBytes { get; set; }

    private int K { get; set; }

    private int M { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        if (!IsaL.IsAvailable())
        {
            throw new InvalidOperationException("libisal.so.2 not found: apt-get install -y libisal2");
        }

        K = int.Parse(Code.Split('+')[0], System.Globalization.CultureInfo.InvariantCulture);
        M = int.Parse(Code.Split('+')[1], System.Globalization.CultureInfo.InvariantCulture);
        int k = K, m = M, n = k + m, s = ShardBytes;
        _codec = new ReedSolomon(k, m);
        _shards = (byte*)NativeMemory.AlignedAlloc((nuint)(n * s), 64);
        _isaShards = (byte*)NativeMemory.AlignedAlloc((nuint)(n * s), 64);
        var random = new Random(1);
        random.NextBytes(new Span<byte>(_shards, k * s));
        new Span<byte>(_shards, k * s).CopyTo(new Span<byte>(_isaShards, k * s));

        // ISA-L: the same systematic Cauchy matrix (rows k.., 1 / (i xor j)), tables for the parity rows.
        var matrix = (byte*)NativeMemory.Alloc((nuint)(n * k));
        IsaL.GfGenCauchy1Matrix(matrix, n, k);
        _isaEncodeTables = (byte*)NativeMemory.AlignedAlloc((nuint)(32 * k * m), 64);
        IsaL.EcInitTables(k, m, matrix + (k * k), _isaEncodeTables);
        _isaData = (byte**)NativeMemory.Alloc((nuint)(k * sizeof(byte*)));
        _isaCoding = (byte**)NativeMemory.Alloc((nuint)(m * sizeof(byte*)));
        for (var i = 0; i < k; i++)
        {
            _isaData[i] = _isaShards + (i * s);
        }

        for (var i = 0; i < m; i++)
        {
            _isaCoding[i] = _isaShards + ((k + i) * s);
        }

        // Check once that both produce the same parity (same field, same matrix).
        EncodeRelay();
        EncodeIsaL();
        if (!new Span<byte>(_shards + (k * s), m * s).SequenceEqual(new Span<byte>(_isaShards + (k * s), m * s)))
        {
            throw new InvalidOperationException("Relay and ISA-L parity differ.");
        }

        // Decode setup: data shards 0..m-1 lost; survivors are shards m..k+m-1.
        _present = new bool[n];
        for (var i = m; i < n; i++)
        {
            _present[i] = true;
        }

        var sub = (byte*)NativeMemory.Alloc((nuint)(k * k));
        var inverse = (byte*)NativeMemory.Alloc((nuint)(k * k));
        for (var r = 0; r < k; r++)
        {
            new Span<byte>(matrix + ((m + r) * k), k).CopyTo(new Span<byte>(sub + (r * k), k));
        }

        if (IsaL.GfInvertMatrix(sub, inverse, k) != 0)
        {
            throw new InvalidOperationException("ISA-L could not invert the decode matrix.");
        }

        _isaDecodeTables = (byte*)NativeMemory.AlignedAlloc((nuint)(32 * k * m), 64);
        IsaL.EcInitTables(k, m, inverse, _isaDecodeTables); // rows 0..m-1 of the inverse rebuild data 0..m-1
        _isaSurvivors = (byte**)NativeMemory.Alloc((nuint)(k * sizeof(byte*)));
        _isaRebuilt = (byte**)NativeMemory.Alloc((nuint)(m * sizeof(byte*)));
        for (var r = 0; r < k; r++)
        {
            _isaSurvivors[r] = _isaShards + ((m + r) * s);
        }

        for (var i = 0; i < m; i++)
        {
            _isaRebuilt[i] = _isaShards + (i * s);
        }

        var original = new Span<byte>(_shards, k * s).ToArray();
        new Span<byte>(_shards, m * s).Clear();
        new Span<byte>(_isaShards, m * s).Clear();
        DecodeRelay();
        DecodeIsaL();
        if (!new Span<byte>(_shards, k * s).SequenceEqual(original) || !new Span<byte>(_isaShards, k * s).SequenceEqual(original))
        {
            throw new InvalidOperationException("Decode did not rebuild the data.");
        }

        NativeMemory.Free(sub);
        NativeMemory.Free(inverse);
        NativeMemory.Free(matrix);
    }

    [Benchmark]
    public void EncodeRelay()
    {
        int k = K, m = M, s = ShardBytes;
        _codec.Encode(new ReadOnlySpan<byte>(_shards, k * s), new Span<byte>(_shards + (k * s), m * s), s);
    }

    [Benchmark]
    public void EncodeIsaL() => IsaL.EcEncodeData(ShardBytes, K, M, _isaEncodeTables, _isaData, _isaCoding);

    [Benchmark]
    public bool DecodeRelay()
    {
        var n = K + M;
        return _codec.TryDecode(new Span<byte>(_shards, n * ShardBytes), _present, ShardBytes);
    }

    [Benchmark]
    public void DecodeIsaL() => IsaL.EcEncodeData(ShardBytes, K, M, _isaDecodeTables, _isaSurvivors, _isaRebuilt);

    [GlobalCleanup]
    public void Cleanup()
    {
        NativeMemory.AlignedFree(_shards);
        NativeMemory.AlignedFree(_isaShards);
        NativeMemory.AlignedFree(_isaEncodeTables);
        NativeMemory.AlignedFree(_isaDecodeTables);
        NativeMemory.Free(_isaData);
        NativeMemory.Free(_isaCoding);
        NativeMemory.Free(_isaSurvivors);
        NativeMemory.Free(_isaRebuilt);
    }
}
