using System.Buffers;

namespace Relay.L7;

/// <summary>
/// A request body read in part to see whether it fits the buffer cap: replays the part read (from
/// a pooled buffer, returned once consumed or disposed), then the rest from the original stream.
/// </summary>
internal sealed class PrefixedStream(byte[] prefix, int length, Stream rest) : Stream
{
    private byte[]? _prefix = prefix;
    private int _offset;

    public override bool CanRead => true;

    public override bool CanSeek => false;

    public override bool CanWrite => false;

    public override long Length => throw new NotSupportedException();

    public override long Position
    {
        get => throw new NotSupportedException();
        set => throw new NotSupportedException();
    }

    public override void Flush()
    {
    }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        if (TryReadPrefix(buffer, out var read))
        {
            return read;
        }

        return rest.Read(buffer);
    }

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
        TryReadPrefix(buffer.Span, out var read) ? ValueTask.FromResult(read) : rest.ReadAsync(buffer, cancellationToken);

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        Release();
        base.Dispose(disposing);
    }

    private bool TryReadPrefix(Span<byte> buffer, out int read)
    {
        read = 0;
        if (_prefix is null || buffer.IsEmpty)
        {
            return false;
        }

        read = Math.Min(buffer.Length, length - _offset);
        _prefix.AsSpan(_offset, read).CopyTo(buffer);
        _offset += read;
        if (_offset == length)
        {
            Release();
        }

        return true;
    }

    private void Release()
    {
        var prefix = Interlocked.Exchange(ref _prefix, null);
        if (prefix is not null)
        {
            ArrayPool<byte>.Shared.Return(prefix);
        }
    }
}
