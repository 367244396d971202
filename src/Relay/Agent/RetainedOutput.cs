using System.Buffers;

namespace Relay.Agent;

/// <summary>
/// The backend output a shadow keeps from the relay's last known delivered cut onward: one growing
/// pooled array with a moving start. Not thread-safe; the shadow session's lock guards it.
/// </summary>
internal sealed class RetainedOutput : IDisposable
{
    private const int MinimumBytes = 4096;

    private byte[] _buffer = [];
    private int _start;
    private int _count;
    private long _startOffset;
    private long _trimTo;

    /// <summary>Stream offset of the first retained byte.</summary>
    public long Start => _startOffset;

    /// <summary>Stream offset just past the last retained byte.</summary>
    public long End => _startOffset + _count;

    public int Length => _count;

    /// <summary>Appends the next output bytes (they start at <see cref="End"/>), skipping what lies below the trim point.</summary>
    public void Append(ReadOnlySpan<byte> data)
    {
        if (_count == 0 && _startOffset < _trimTo)
        {
            var skip = (int)Math.Min(data.Length, _trimTo - _startOffset);
            _startOffset += skip;
            data = data[skip..];
        }

        if (data.IsEmpty)
        {
            return;
        }

        if (_start + _count + data.Length > _buffer.Length)
        {
            if (_count + data.Length <= _buffer.Length)
            {
                _buffer.AsSpan(_start, _count).CopyTo(_buffer);
            }
            else
            {
                var grown = ArrayPool<byte>.Shared.Rent(Math.Max(MinimumBytes, Math.Max(_count + data.Length, _buffer.Length * 2)));
                _buffer.AsSpan(_start, _count).CopyTo(grown);
                ReturnBuffer();
                _buffer = grown;
            }

            _start = 0;
        }

        data.CopyTo(_buffer.AsSpan(_start + _count));
        _count += data.Length;
    }

    /// <summary>Drops everything below <paramref name="offset"/>, including bytes that arrive later (never moves back).</summary>
    public void TrimTo(long offset)
    {
        if (offset <= _trimTo)
        {
            return;
        }

        _trimTo = offset;
        var drop = (int)Math.Clamp(offset - _startOffset, 0, _count);
        _start += drop;
        _count -= drop;
        _startOffset += drop;
        if (_count == 0)
        {
            _start = 0;
        }
    }

    /// <summary>The retained bytes from <paramref name="offset"/> (between <see cref="Start"/> and <see cref="End"/>) to the end.</summary>
    public ReadOnlyMemory<byte> From(long offset)
    {
        if (offset < _startOffset || offset > End)
        {
            throw new ArgumentOutOfRangeException(nameof(offset), offset, $"retained output covers [{_startOffset}, {End})");
        }

        return _buffer.AsMemory(_start + (int)(offset - _startOffset), (int)(End - offset));
    }

    public void Dispose()
    {
        ReturnBuffer();
        _buffer = [];
        _start = _count = 0;
    }

    private void ReturnBuffer()
    {
        if (_buffer.Length > 0)
        {
            ArrayPool<byte>.Shared.Return(_buffer);
        }
    }
}
