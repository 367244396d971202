using Relay.Transport.Crypto;
using Relay.Transport.Multipath;
using Relay.Transport.Sockets;
using Relay.Transport.Tests.Support;

namespace Relay.Transport.Tests.Framing;

// Measures process-wide managed memory, so it must not share the process with tests running beside it.
[Collection(nameof(DatagramFuzzTests))]
public class DatagramFuzzTests
{
    [Fact]
    public async Task ArbitraryBytes_NeverThrow_AreAllDropped_AndNothingGrows()
    {
        var link = new InMemoryLink(1);
        var keys = TestKeys.Fresh();
        var options = new MultipathChannelOptions();
        await using var server = MultipathChannel.Start(options, keys, isClient: false, new IDatagramSocket[] { link.B });
        await using var client = MultipathChannel.Start(options, keys, isClient: true, new IDatagramSocket[] { link.A });
        using var opener = new PacketProtector(options.Aead, keys.Receive(isClient: false));
        var plain = new byte[options.MaxDatagramBytes];

        // A few genuine datagrams to mutate.
        link.TapEnabled = true;
        await client.SendAsync(new byte[700], TestContext.Current.CancellationToken);
        client.Flush();
        await Task.Delay(100, TestContext.Current.CancellationToken);
        link.TapEnabled = false;
        byte[][] seeds;
        lock (link.TapAtoB)
        {
            seeds = link.TapAtoB.ToArray();
        }

        Assert.NotEmpty(seeds);
        var before = server.GetMetrics();
        GC.Collect();
        var memoryBefore = GC.GetTotalMemory(forceFullCollection: true);
        var random = new Random(2024);
        const int Inputs = 30_000;
        for (var i = 0; i < Inputs; i++)
        {
            byte[] input;
            switch (i % 3)
            {
                case 0:
                    input = new byte[random.Next(0, 1600)];
                    random.NextBytes(input);
                    break;
                case 1:
                    // Plausible header, random body: exercises the replay check and the AEAD.
                    input = new byte[random.Next(28, 1500)];
                    random.NextBytes(input);
                    input[0] = 1;
                    input[1] = (byte)random.Next(1, 7);
                    input[2] = 0;
                    input[3] = 0;
                    input[4] = 0;
                    break;
                default:
                    // A genuine datagram with a few bytes flipped, cut or extended.
                    var seed = seeds[random.Next(seeds.Length)];
                    input = seed.AsSpan(0, Math.Min(seed.Length, random.Next(0, seed.Length + 40))).ToArray();
                    for (var f = random.Next(1, 4); f > 0 && input.Length > 0; f--)
                    {
                        input[random.Next(input.Length)] ^= (byte)random.Next(1, 256);
                    }

                    break;
            }

            server.ProcessDatagram(input, opener, plain);
        }

        var after = server.GetMetrics();
        Assert.Equal(Inputs, after.TotalDrops - before.TotalDrops);
        Assert.Equal(before.FramesReceived, after.FramesReceived);
        GC.Collect();
        var growth = GC.GetTotalMemory(forceFullCollection: true) - memoryBefore;
        Assert.True(growth < 4 * 1024 * 1024, $"memory grew by {growth} bytes");
    }
}

[CollectionDefinition(nameof(DatagramFuzzTests), DisableParallelization = true)]
public sealed class DatagramFuzzSerial
{
}
