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
        var n = BatchCompressor.TryCompress(raw, compressed);
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
        Assert.Equal(0, BatchCompressor.TryCompress(raw, new byte[4000]));
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
