using System.Buffers;
using System.Text;
using Microsoft.Extensions.Time.Testing;
using Relay.Echo;

namespace Relay.Tests.Echo;

/// <summary>
/// The echo building blocks composed the way DESIGN.md's failover runs them, in memory: the pump
/// appends client input to the <see cref="EchoLog"/> before the primary sees it and forwards only
/// whole replies; a shipper feeds a shadow from the log with the primary's digests; the primary
/// dies at a random point, losing its unread output; the shadow applies the log's tail and skips
/// the replies the client already has. The client's bytes must equal a run without the failure.
/// </summary>
public class EchoSpliceSimulationTests
{
    /// <summary>A backend whose output is a deterministic function of its input (one reply line per request line).</summary>
    private sealed class LineBackend(int? corruptReply = null)
    {
        private readonly List<byte> _line = [];
        private int _count;

        public List<byte> Output { get; } = [];

        public void Receive(ReadOnlySpan<byte> input)
        {
            foreach (var b in input)
            {
                _line.Add(b);
                if (b == (byte)'\n')
                {
                    _count++;
                    var sum = _line.Aggregate(0, (s, x) => (s * 31) + x);
                    var reply = $"reply {_count} to {_line.Count} bytes, sum {(_count == corruptReply ? sum + 1 : sum)}{new string('.', _count % 17)}\r\n";
                    Output.AddRange(Encoding.ASCII.GetBytes(reply));
                    _line.Clear();
                }
            }
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(5)]
    [InlineData(6)]
    [InlineData(7)]
    [InlineData(8)]
    public void PrimaryDies_ShadowTakesOver_ClientGetsTheBytesOfARunWithoutFailure(int seed)
    {
        var run = Run(seed, corruptReply: null);
        Assert.Equal(ShadowState.Ready, run.StateAtSplice);
        Assert.Equal(Encoding.ASCII.GetString(run.Expected), Encoding.ASCII.GetString(run.Client));
    }

    [Fact]
    public void AShadowThatAnsweredOneRequestDifferently_IsDiverged_BeforeTheSplice()
    {
        var run = Run(3, corruptReply: 5);
        Assert.Equal(ShadowState.Diverged, run.StateAtSplice);
        Assert.Contains("response 4", run.ReasonAtSplice, StringComparison.Ordinal); // the 5th reply is index 4
    }

    private sealed record Outcome(byte[] Expected, byte[] Client, ShadowState StateAtSplice, string ReasonAtSplice);

    private static Outcome Run(int seed, int? corruptReply)
    {
        var random = new Random(seed);
        var input = new StringBuilder();
        for (var i = 0; i < 300; i++)
        {
            input.Append("request ").Append(i).Append(' ').Append(new string('x', random.Next(0, 80))).Append(random.Next(2) == 0 ? "\n" : "\r\n");
        }

        var inputBytes = Encoding.ASCII.GetBytes(input.ToString());
        var reference = new LineBackend();
        reference.Receive(inputBytes);

        var time = new FakeTimeProvider();
        var lines = CodecOptions.For(MessageCodec.Lines);
        using var log = new EchoLog(new EchoLogOptions(RetentionCapBytes: 1 << 20, SegmentBytes: 1024));
        Assert.True(log.TryAddShadow(out var shadowId, out _));
        var tracker = new ShadowSessionTracker(new ShadowPolicy(4096, 0, TimeSpan.FromSeconds(1)), time);

        var primary = new LineBackend();
        var primaryDigests = new DigestLog(4096);
        var output = new MessageStream(MessageFramer.Create(lines, StreamDirection.Response), primaryDigests);
        var held = new List<byte>(); // what the relay's upstream pipe holds: read from the primary, not yet forwarded
        var primaryRead = 0;
        long delivered = 0;
        var client = new List<byte>();

        var shadow = new LineBackend(corruptReply);
        var comparer = new DigestComparer(4096);
        var shadowOutput = new MessageStream(MessageFramer.Create(lines, StreamDirection.Response), comparer.Shadow);
        long shadowApplied = 0;
        long digestsShipped = 0;

        void ReadPrimary(int most)
        {
            var n = Math.Min(most, primary.Output.Count - primaryRead);
            held.AddRange(primary.Output.GetRange(primaryRead, n));
            primaryRead += n;
            Assert.True(output.FeedBuffered(new ReadOnlySequence<byte>(held.ToArray()), delivered, out var whole));
            client.AddRange(whole.ToArray());
            delivered += whole.Length;
            held.RemoveRange(0, (int)whole.Length);
        }

        void FeedShadowOutput() =>
            Assert.True(shadowOutput.Feed(shadow.Output.Skip((int)shadowOutput.BytesFed).ToArray()));

        void Ship()
        {
            var batch = new byte[random.Next(1, 2000)];
            Assert.True(log.TryRead(shadowApplied, batch, out var copied));
            shadow.Receive(batch.AsSpan(0, copied));
            shadowApplied += copied;
            FeedShadowOutput();
            var digests = new DigestEntry[256];
            var n = primaryDigests.CopyTo(digestsShipped, digests);
            foreach (var entry in digests.AsSpan(0, n))
            {
                comparer.AddPrimary(entry);
                digestsShipped = entry.Index + 1;
            }

            log.Ack(shadowId, shadowApplied);
            tracker.OnLogAdvanced(log.Length, output.Messages);
            tracker.OnAck(log.Acked(shadowId), 0, comparer.Compare(), comparer.DivergedIndex);
            time.Advance(TimeSpan.FromMilliseconds(10));
        }

        // Normal operation until the primary dies somewhere in the middle.
        var dieAt = random.Next(inputBytes.Length / 4, inputBytes.Length * 3 / 4);
        var sent = 0;
        while (sent < dieAt)
        {
            var n = Math.Min(inputBytes.Length - sent, random.Next(1, 300));
            var chunk = inputBytes.AsSpan(sent, n);
            Assert.True(log.Append(chunk)); // the log first, then the primary
            primary.Receive(chunk);
            sent += n;
            ReadPrimary(random.Next(0, 400));
            if (random.Next(3) == 0)
            {
                Ship();
            }
        }

        // The primary dies: whatever it wrote that the relay had not read is gone, and the held
        // partial reply is dropped with the connection. The last echo interval runs.
        Ship();
        var stateAtSplice = tracker.State;
        var reasonAtSplice = tracker.Reason;
        if (stateAtSplice != ShadowState.Ready)
        {
            return new Outcome(reference.Output.ToArray(), client.ToArray(), stateAtSplice, reasonAtSplice);
        }

        // TAKEOVER {inOffset = log.Length, delivered = output.Messages} with the log tail the agent has not acked.
        var tail = new ArrayBufferWriter<byte>();
        Assert.True(log.WriteTo(log.Acked(shadowId), log.Length, tail));
        shadow.Receive(tail.WrittenSpan);
        FeedShadowOutput();
        var deliveredMessages = output.Messages;
        long cut = 0;
        if (deliveredMessages > 0)
        {
            Assert.True(comparer.Shadow.TryGet(deliveredMessages - 1, out var last));
            cut = last.EndOffset; // the agent discards its backend's output up to 'delivered' messages
        }

        Assert.Equal(delivered, client.Count);
        client.AddRange(shadow.Output.Skip((int)cut));

        // The session carries on against the shadow.
        var before = shadow.Output.Count;
        shadow.Receive(inputBytes.AsSpan(sent));
        client.AddRange(shadow.Output.Skip(before));
        return new Outcome(reference.Output.ToArray(), client.ToArray(), stateAtSplice, reasonAtSplice);
    }
}
