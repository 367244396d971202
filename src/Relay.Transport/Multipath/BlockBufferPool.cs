using System.Buffers;

namespace Relay.Transport.Multipath;

/// <summary>
/// The channel's own pool of block-sized buffers, with a cap. ArrayPool.Shared keeps at most 32
/// arrays per size per core, fewer than a send window holds, so a busy channel allocated a fresh
/// 32 KiB array for most blocks (measured: ~500 B per 1 KiB frame). Larger requests (a peer's
/// unusually large block) fall back to ArrayPool.Shared.
/// </summary>
internal sealed class BlockBufferPool
{
    private readonly Stack<byte[]> _free = new();
    private readonly int _capacity;

    public BlockBufferPool(int bufferBytes, int capacity)
    {
        BufferBytes = bufferBytes;
        _capacity = capacity;
    }

    public int BufferBytes { get; }

    public byte[] Rent(int length)
    {
        if (length > BufferBytes)
        {
            return ArrayPool<byte>.Shared.Rent(length);
        }

        lock (_free)
        {
            if (_free.TryPop(out var buffer))
            {
                return buffer;
            }
        }

        return GC.AllocateUninitializedArray<byte>(BufferBytes);
    }

    public void Return(byte[] buffer)
    {
        if (buffer.Length != BufferBytes)
        {
            ArrayPool<byte>.Shared.Return(buffer);
            return;
        }

        lock (_free)
        {
            if (_free.Count < _capacity)
            {
                _free.Push(buffer);
            }
        }
    }
}
