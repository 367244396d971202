using BenchmarkDotNet.Attributes;
using Relay.Transport.Fec;
using Relay.Transport.Paths;

namespace Relay.Benchmarks.Transport;

/// <summary>
/// Residual block loss after FEC at 5% independent shard loss, with the parity the channel's policy
/// picks for k = 10 (target 1e-3): GlobalSetup erases shards of 1,000,000 real blocks at random and
/// counts the blocks the real decoder cannot rebuild, printing the ratio. The timed method is one
/// erase-and-decode of a 1 KiB-shard block.
/// </summary>
[MemoryDiagnoser]
public class ResidualBlockLossBenchmarks
{
    private const int K = 10;
    private const double Loss = 0.05;
    private const int ShardBytes = 1024;
    private ReedSolomon _codec = null!;
    private byte[] _shards = null!;
    private bool[] _present = null!;
    private Random _random = null!;
    private int _m;

    [GlobalSetup]
    public void Setup()
    {
        _m = RedundancyPolicy.ChooseParity(K, Loss, 1e-3, 1, 16, 1);
        _codec = new ReedSolomon(K, _m);
        _shards = new byte[(K + _m) * ShardBytes];
        _present = new bool[K + _m];
        _random = new Random(5);
        _random.NextBytes(_shards.AsSpan(0, K * ShardBytes));
        _codec.Encode(_shards.AsSpan(0, K * ShardBytes), _shards.AsSpan(K * ShardBytes), ShardBytes);

        // The count uses 16-byte shards so a million real decodes finish in seconds; the code does
        // not depend on the shard size.
        var small = new ReedSolomon(K, _m);
        var blocks = new byte[(K + _m) * 16];
        var present = new bool[K + _m];
        const int Blocks = 1_000_000;
        var failed = 0;
        var random = new Random(11);
        for (var b = 0; b < Blocks; b++)
        {
            for (var i = 0; i < present.Length; i++)
            {
                present[i] = random.NextDouble() >= Loss;
            }

            if (!small.TryDecode(blocks, present, 16))
            {
                failed++;
            }
        }

        Console.WriteLine($"// residual block loss: k={K} m={_m} parity {(double)_m / (K + _m):P1}, loss {Loss:P0}: {failed} of {Blocks} blocks = {(double)failed / Blocks:E2} (bound {RedundancyPolicy.FailureProbability(K, _m, Loss):E2})");
    }

    [Benchmark]
    public bool EraseAndDecode()
    {
        for (var i = 0; i < _present.Length; i++)
        {
            _present[i] = _random.NextDouble() >= Loss;
        }

        return _codec.TryDecode(_shards, _present, ShardBytes);
    }
}
