using K4os.Compression.LZ4;
using K4os.Compression.LZ4.Engine;

namespace Relay.Transport.Compression;

/// <summary>
/// LZ4 block compression of frame batches, kept only when it shrinks the batch. Each call uses a
/// fresh unmanaged LZ4 context: <c>LZ4Codec.Encode</c> allocates its 16 KiB state on the managed heap
/// per call, which was most of the channel's per-frame allocation (measured with a GC AllocationTick
/// listener). A context cannot be reused: it carries the previous block as a dictionary.
/// </summary>
/// <remarks>Not thread-safe: the channel compresses under its send lock.</remarks>
internal sealed unsafe class BatchCompressor : IDisposable
{
    /// <summary>Most batches skipped after attempts that did not shrink (encrypted or compressed payloads).</summary>
    public const int MaxSkip = 32;

    private int _skip;
    private int _skipped;

    /// <summary>LZ4 attempts made (for tests and diagnostics).</summary>
    public long Attempts { get; private set; }

    /// <summary>
    /// Compresses <paramref name="raw"/> into <paramref name="destination"/>; returns the compressed
    /// length, or 0 when the result would not be smaller than the input (send the batch raw).
    /// Every call is an independent LZ4 block (no dictionary carried between calls). After a batch
    /// that did not shrink, the next 1, 2, 4 ... up to <see cref="MaxSkip"/> batches go raw without
    /// an attempt (a stream of incompressible data costs one attempt in 33 batches); a batch that
    /// shrinks ends the back-off.
    /// </summary>
    public int TryCompress(ReadOnlySpan<byte> raw, Span<byte> destination)
    {
        if (raw.Length < 64)
        {
            return 0;
        }

        if (_skipped < _skip)
        {
            _skipped++;
            return 0;
        }

        _skipped = 0;
        Attempts++;
        var length = Compress(raw, destination);
        _skip = length > 0 ? 0 : Math.Clamp(_skip * 2, 1, MaxSkip);
        return length;
    }

    private static int Compress(ReadOnlySpan<byte> raw, Span<byte> destination)
    {
        var limit = Math.Min(destination.Length, raw.Length - 1);
        int encoded;
        using var context = new Pubternal.FastContext();
        fixed (byte* source = raw)
        fixed (byte* target = destination)
        {
            encoded = Pubternal.CompressFast(context, source, target, raw.Length, limit, 1);
        }

        return encoded > 0 && encoded < raw.Length ? encoded : 0;
    }

    /// <summary>Returns false for corrupt input or a length other than <paramref name="expectedLength"/>.</summary>
    public static bool TryDecompress(ReadOnlySpan<byte> compressed, Span<byte> destination, int expectedLength)
    {
        if (expectedLength > destination.Length)
        {
            return false;
        }

        var decoded = LZ4Codec.Decode(compressed, destination[..expectedLength]);
        return decoded == expectedLength;
    }

    public void Dispose()
    {
        // Nothing held between calls; kept disposable so a pooled context can return without API change.
    }
}
