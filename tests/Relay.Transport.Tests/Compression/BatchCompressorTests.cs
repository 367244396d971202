using System.Text;
using Relay.Transport.Compression;

namespace Relay.Transport.Tests.Compression;

public class BatchCompressorTests
{
    [Fact]
    public void CompressibleBatch_ShrinksAndRoundTrips()
    {
        var raw = Encoding.ASCII.GetBytes(string.Concat(Enumerable.Repeat("GET /index.html HTTP/1.1\r\n", 200)));
        var compressed = new byte[raw.Length];
        using var compressor = new BatchCompressor();
        var n = compressor.TryCompress(raw, compressed);
        Assert.InRange(n, 1, raw.Length / 4);
        var back = new byte[raw.Length];
        Assert.True(BatchCompressor.TryDecompress(compressed.AsSpan(0, n), back, raw.Length));
        Assert.Equal(raw, back);
    }

    [Fact]
    public void RandomBatch_IsNotCompressed()
    {
        var raw = new byte[4000];
        new Random(1).NextBytes(raw);
        using var compressor = new BatchCompressor();
        Assert.Equal(0, compressor.TryCompress(raw, new byte[4000]));
    }

    [Fact]
    public void IncompressibleStream_BacksOffItsAttempts_AndACompressibleBatchAfterwardsStillShrinks()
    {
        using var compressor = new BatchCompressor();
        var random = new Random(2);
        var noise = new byte[4000];
        for (var i = 0; i < 330; i++)
        {
            random.NextBytes(noise);
            Assert.Equal(0, compressor.TryCompress(noise, new byte[4000]));
        }

        // 1 + 2 + 4 + 8 + 16 skipped after the first five failures, then one attempt in 33 batches.
        Assert.InRange(compressor.Attempts, 10, 20);

        var text = Encoding.ASCII.GetBytes(string.Concat(Enumerable.Repeat("SET key value\r\n", 300)));
        var shrunk = 0;
        for (var i = 0; i < BatchCompressor.MaxSkip + 1; i++)
        {
            shrunk = compressor.TryCompress(text, new byte[text.Length]);
            if (shrunk > 0)
            {
                break;
            }
        }

        Assert.True(shrunk > 0, "a compressible batch went raw for longer than the longest back-off");
        Assert.True(compressor.TryCompress(text, new byte[text.Length]) > 0, "after a batch shrank, the next one is attempted at once");
    }

    [Fact]
    public void ReusedContext_EachBlockDecodesOnItsOwn()
    {
        using var compressor = new BatchCompressor();
        var random = new Random(4);
        for (var i = 0; i < 50; i++)
        {
            var raw = Encoding.ASCII.GetBytes(string.Concat(Enumerable.Range(0, 300).Select(_ => random.Next(0, 40).ToString(System.Globalization.CultureInfo.InvariantCulture) + " ")));
            var compressed = new byte[raw.Length];
            var n = compressor.TryCompress(raw, compressed);
            Assert.True(n > 0);
            var back = new byte[raw.Length];
            Assert.True(BatchCompressor.TryDecompress(compressed.AsSpan(0, n), back, raw.Length));
            Assert.Equal(raw, back);
        }
    }

    [Fact]
    public void Compress_AllocatesOnlyASmallHandle()
    {
        using var compressor = new BatchCompressor();
        var raw = Encoding.ASCII.GetBytes(string.Concat(Enumerable.Repeat("frame batch ", 2000)));
        var compressed = new byte[raw.Length];
        compressor.TryCompress(raw, compressed);
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 100; i++)
        {
            compressor.TryCompress(raw, compressed);
        }

        // The LZ4 state is unmanaged; only its small managed handle is allocated per call.
        Assert.InRange((GC.GetAllocatedBytesForCurrentThread() - before) / 100, 0, 128);
    }

    [Fact]
    public void CorruptInput_ReturnsFalse()
    {
        var random = new Random(2);
        var garbage = new byte[200];
        var output = new byte[1000];
        for (var i = 0; i < 2000; i++)
        {
            random.NextBytes(garbage);
            var length = random.Next(1, 1000);
            _ = BatchCompressor.TryDecompress(garbage.AsSpan(0, random.Next(0, 200)), output, length);
        }
    }
}
