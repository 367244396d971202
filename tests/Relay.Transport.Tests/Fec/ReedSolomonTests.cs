using Relay.Transport.Fec;

namespace Relay.Transport.Tests.Fec;

public class ReedSolomonTests
{
    public static TheoryData<GfKernel> Kernels()
    {
        var data = new TheoryData<GfKernel>();
        foreach (var kernel in Enum.GetValues<GfKernel>())
        {
            data.Add(kernel);
        }

        return data;
    }

    // Carry-less multiply then reduce by 0x11D: independent of the library's log/exp tables.
    private static byte RefMul(byte a, byte b)
    {
        var product = 0;
        for (var i = 0; i < 8; i++)
        {
            if ((b & (1 << i)) != 0)
            {
                product ^= a << i;
            }
        }

        for (var bit = 14; bit >= 8; bit--)
        {
            if ((product & (1 << bit)) != 0)
            {
                product ^= 0x11D << (bit - 8);
            }
        }

        return (byte)product;
    }

    private static byte RefInverse(byte a)
    {
        for (var x = 1; x < 256; x++)
        {
            if (RefMul(a, (byte)x) == 1)
            {
                return (byte)x;
            }
        }

        throw new InvalidOperationException("no inverse");
    }

    private static byte[] RefParity(byte[] data, int k, int m, int shardSize)
    {
        var parity = new byte[m * shardSize];
        for (var i = 0; i < m; i++)
        {
            for (var j = 0; j < k; j++)
            {
                var c = RefInverse((byte)((k + i) ^ j));
                for (var b = 0; b < shardSize; b++)
                {
                    parity[(i * shardSize) + b] ^= RefMul(c, data[(j * shardSize) + b]);
                }
            }
        }

        return parity;
    }

    [Fact]
    public void FieldTables_MatchCarrylessReference()
    {
        for (var a = 0; a < 256; a++)
        {
            for (var b = 0; b < 256; b += 7)
            {
                Assert.Equal(RefMul((byte)a, (byte)b), GaloisField.Mul((byte)a, (byte)b));
            }

            if (a != 0)
            {
                Assert.Equal(1, GaloisField.Mul((byte)a, GaloisField.Inverse((byte)a)));
            }
        }
    }

    [Theory]
    [MemberData(nameof(Kernels))]
    public void Encode_MatchesScalarReference_RandomShapes(GfKernel kernel)
    {
        if (!GfKernels.IsSupported(kernel))
        {
            Assert.Skip($"{kernel} is not supported by this CPU.");
        }

        var random = new Random(1234 + (int)kernel);
        for (var round = 0; round < 40; round++)
        {
            var k = random.Next(1, 40);
            var m = random.Next(0, 12);
            var shardSize = random.Next(1, 700);
            var data = new byte[k * shardSize];
            random.NextBytes(data);
            var parity = new byte[m * shardSize];
            random.NextBytes(parity); // must be overwritten

            new ReedSolomon(k, m, kernel).Encode(data, parity, shardSize);

            Assert.Equal(RefParity(data, k, m, shardSize), parity);
        }
    }

    [Theory]
    [MemberData(nameof(Kernels))]
    public void Decode_AnyKOfKPlusM_RebuildsData(GfKernel kernel)
    {
        if (!GfKernels.IsSupported(kernel))
        {
            Assert.Skip($"{kernel} is not supported by this CPU.");
        }

        var random = new Random(99 + (int)kernel);
        for (var round = 0; round < 60; round++)
        {
            var k = random.Next(1, 30);
            var m = random.Next(1, 10);
            var shardSize = random.Next(1, 300) * (round % 3 == 0 ? 64 : 1);
            var rs = new ReedSolomon(k, m, kernel);
            var shards = new byte[(k + m) * shardSize];
            random.NextBytes(shards.AsSpan(0, k * shardSize));
            rs.Encode(shards.AsSpan(0, k * shardSize), shards.AsSpan(k * shardSize), shardSize);
            var original = (byte[])shards.Clone();

            // Erase up to m shards at random (sometimes exactly m), garbage their bytes.
            var present = Enumerable.Repeat(true, k + m).ToArray();
            var erase = round % 2 == 0 ? m : random.Next(0, m + 1);
            foreach (var idx in Enumerable.Range(0, k + m).OrderBy(_ => random.Next()).Take(erase))
            {
                present[idx] = false;
                random.NextBytes(shards.AsSpan(idx * shardSize, shardSize));
            }

            Assert.True(rs.TryDecode(shards, present, shardSize));
            Assert.Equal(original.AsSpan(0, k * shardSize).ToArray(), shards.AsSpan(0, k * shardSize).ToArray());
        }
    }

    [Fact]
    public void Decode_TooFewShards_ReturnsFalse()
    {
        var rs = new ReedSolomon(4, 2);
        var shards = new byte[6 * 16];
        var present = new[] { false, true, false, true, false, true };
        Assert.False(rs.TryDecode(shards, present, 16));
    }

    [Fact]
    public void MaximalCode_255Shards_Rebuilds()
    {
        var random = new Random(7);
        const int K = 200, M = 55, S = 80;
        var rs = new ReedSolomon(K, M);
        var shards = new byte[255 * S];
        random.NextBytes(shards.AsSpan(0, K * S));
        rs.Encode(shards.AsSpan(0, K * S), shards.AsSpan(K * S), S);
        var original = shards.AsSpan(0, K * S).ToArray();
        var present = Enumerable.Repeat(true, 255).ToArray();
        for (var i = 0; i < M; i++)
        {
            present[i * 3] = false;
            shards.AsSpan(i * 3 * S, S).Clear();
        }

        Assert.True(rs.TryDecode(shards, present, S));
        Assert.Equal(original, shards.AsSpan(0, K * S).ToArray());
    }

    [Fact]
    public void Constructor_RejectsMoreThan255Shards()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new ReedSolomon(200, 56));
    }

    [Fact]
    public void EncodeAndDecode_AllocateNothing()
    {
        var rs = new ReedSolomon(10, 4);
        const int S = 1024;
        var shards = new byte[14 * S];
        new Random(3).NextBytes(shards.AsSpan(0, 10 * S));
        var present = Enumerable.Repeat(true, 14).ToArray();
        present[2] = present[5] = present[11] = false;
        rs.Encode(shards.AsSpan(0, 10 * S), shards.AsSpan(10 * S), S);
        Assert.True(rs.TryDecode(shards, present, S)); // warm up, builds the decode matrix

        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 100; i++)
        {
            rs.Encode(shards.AsSpan(0, 10 * S), shards.AsSpan(10 * S), S);
            rs.TryDecode(shards, present, S);
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }
}
