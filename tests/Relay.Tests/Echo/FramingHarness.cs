using Relay.Echo;

namespace Relay.Tests.Echo;

/// <summary>Feeds a framer whole or in chunks and records every boundary it reports.</summary>
internal static class FramingHarness
{
    internal sealed record Outcome(List<(long End, FrameStatus Kind)> Boundaries, FramingError Error, long ErrorOffset);

    public static Outcome Whole(MessageFramer framer, byte[] input) => Chunked(framer, input, [input.Length]);

    public static Outcome Random(MessageFramer framer, byte[] input, Random random, int maxChunk)
    {
        var sizes = new List<int>();
        for (var left = input.Length; left > 0;)
        {
            var size = Math.Min(left, random.Next(0, maxChunk + 1)); // zero-length chunks too
            sizes.Add(size);
            left -= size;
        }

        sizes.Add(0);
        return Chunked(framer, input, sizes);
    }

    public static Outcome Chunked(MessageFramer framer, byte[] input, IReadOnlyList<int> sizes)
    {
        framer.Reset();
        var boundaries = new List<(long, FrameStatus)>();
        long offset = 0;
        foreach (var size in sizes)
        {
            var chunk = input.AsSpan((int)offset, size);
            while (true)
            {
                var status = framer.Advance(chunk, out var consumed);
                Assert.InRange(consumed, 0, chunk.Length);
                offset += consumed;
                chunk = chunk[consumed..];
                if (status == FrameStatus.Error)
                {
                    return new Outcome(boundaries, framer.Error, offset);
                }

                if (status == FrameStatus.NeedMore)
                {
                    Assert.True(chunk.IsEmpty, "NeedMore must consume the whole chunk");
                    break;
                }

                boundaries.Add((offset, status));
            }
        }

        return new Outcome(boundaries, FramingError.None, -1);
    }
}
