using System.Buffers;
using System.IO.Hashing;

namespace Relay.L7.Mirroring;

/// <summary>
/// Keeps a copy of a body up to a cap in a pooled buffer; past the cap it keeps only a running
/// XxHash3 of every byte, so memory stays bounded whatever the body's size.
/// </summary>
internal sealed class BodyCapture : IDisposable
{
    private readonly int _cap;
    private byte[]? _buffer;
    private int _length;
    private XxHash3? _overflow;

    public BodyCapture(int cap)
    {
        _cap = cap;
    }

    /// <summary>True when the whole body is held (so JSON fields can be filtered).</summary>
    public bool Complete => _overflow is null;

    public ReadOnlySpan<byte> Held => _buffer is null ? [] : _buffer.AsSpan(0, _length);

    public void Append(ReadOnlySpan<byte> data)
    {
        if (data.IsEmpty)
        {
            return;
        }

        if (_overflow is not null)
        {
            _overflow.Append(data);
            return;
        }

        if (_length + data.Length > _cap)
        {
            _overflow = new XxHash3();
            _overflow.Append(Held);
            _overflow.Append(data);
            Release();
            return;
        }

        if (_buffer is null || _buffer.Length < _length + data.Length)
        {
            var bigger = ArrayPool<byte>.Shared.Rent(Math.Min(_cap, Math.Max(_length + data.Length, Math.Max(4096, (_buffer?.Length ?? 0) * 2))));
            Held.CopyTo(bigger);
            if (_buffer is not null)
            {
                ArrayPool<byte>.Shared.Return(_buffer);
            }

            _buffer = bigger;
        }

        data.CopyTo(_buffer.AsSpan(_length));
        _length += data.Length;
    }

    public ulong Digest(string? contentType, System.Collections.Immutable.ImmutableArray<string> ignoreJsonFields) =>
        _overflow is not null ? _overflow.GetCurrentHashAsUInt64() : ResponseDigest.DigestBody(Held, contentType, ignoreJsonFields);

    public void Dispose() => Release();

    private void Release()
    {
        if (_buffer is not null)
        {
            ArrayPool<byte>.Shared.Return(_buffer);
            _buffer = null;
        }

        _length = 0;
    }
}

/// <summary>A response body stream that writes through to the client and keeps a <see cref="BodyCapture"/> copy.</summary>
internal sealed class CapturingStream(Stream inner, BodyCapture capture) : Stream
{
    public override bool CanRead => false;

    public override bool CanSeek => false;

    public override bool CanWrite => true;

    public override long Length => throw new NotSupportedException();

    public override long Position
    {
        get => throw new NotSupportedException();
        set => throw new NotSupportedException();
    }

    public override void Flush() => inner.Flush();

    public override Task FlushAsync(CancellationToken cancellationToken) => inner.FlushAsync(cancellationToken);

    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    public override void Write(byte[] buffer, int offset, int count)
    {
        inner.Write(buffer, offset, count);
        capture.Append(buffer.AsSpan(offset, count));
    }

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        // Copied first (the caller's buffer is valid until the write completes), so the write's
        // ValueTask goes back as is: no state machine per write. A response that fails is not
        // compared, so bytes captured for a write that then fails do not matter.
        capture.Append(buffer.Span);
        return inner.WriteAsync(buffer, cancellationToken);
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();
}
