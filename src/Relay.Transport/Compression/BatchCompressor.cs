using K4os.Compression.LZ4;

namespace Relay.Transport.Compression;

/// <summary>LZ4 block compression of frame batches, kept only when it shrinks the batch.</summary>
internal static class BatchCompressor
{
    /// <summary>
    /// Compresses <paramref name="raw"/> into <paramref name="destination"/>; returns the compressed
    /// length, or 0 when the result would not be smaller than the input (send the batch raw).
    /// </summary>
    public static int TryCompress(ReadOnlySpan<byte> raw, Span<byte> destination)
    {
        if (raw.Length < 64)
        {
            return 0;
        }

        var limit = Math.Min(destination.Length, raw.Length - 1);
        var encoded = LZ4Codec.Encode(raw, destination[..limit], LZ4Level.L00_FAST);
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
}
