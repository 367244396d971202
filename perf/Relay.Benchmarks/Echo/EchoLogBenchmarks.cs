using BenchmarkDotNet.Attributes;
using Relay.Echo;

namespace Relay.Benchmarks.Echo;

/// <summary>
/// The client→server pump's cost of echo: appending 1 MiB of input per operation in reads of
/// <see cref="ReadBytes"/> to a log with a 256 KiB retention cap, one shadow acking behind each
/// read so the log trims and recycles its pooled segments (steady state), and a shipper-sized
/// tail read per read. Against the segment size: 16 KiB (the default) and 4 KiB.
/// </summary>
[MemoryDiagnoser]
[MinColumn]
#pragma warning disable CA1001 // BenchmarkDotNet needs an unsealed class; [GlobalCleanup] disposes the log.
public class EchoLogBenchmarks
#pragma warning restore CA1001
{
    private const int StreamBytes = 1024 * 1024;
    private EchoLog _log = null!;
    private byte[] _input = [];
    private byte[] _tail = [];
    private int _shadow;

    [Params(512, 4096, 65536)]
    public int ReadBytes { get; set; }

    [Params(false, true)]
    public bool ShipTail { get; set; }

    [Params(4096, 16384)]
    public int SegmentBytes { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _log = new EchoLog(new EchoLogOptions(RetentionCapBytes: 256 * 1024, SegmentBytes: SegmentBytes));
        if (!_log.TryAddShadow(out _shadow, out var reason))
        {
            throw new InvalidOperationException(reason);
        }

        _input = new byte[ReadBytes];
        new Random(1).NextBytes(_input);
        _tail = new byte[ReadBytes];
        Append();
        if (_log.Length != StreamBytes || _log.RetainedBytes > 256 * 1024 + SegmentBytes)
        {
            throw new InvalidOperationException($"log check failed: length {_log.Length}, retained {_log.RetainedBytes}");
        }
    }

    [Benchmark]
    public long Append()
    {
        for (var written = 0; written < StreamBytes; written += ReadBytes)
        {
            _log.Append(_input);
            var length = _log.Length;
            if (ShipTail)
            {
                _log.TryRead(length - ReadBytes, _tail, out _);
            }

            _log.Ack(_shadow, length - ReadBytes);
        }

        return _log.Length;
    }

    [GlobalCleanup]
    public void Cleanup() => _log.Dispose();
}
