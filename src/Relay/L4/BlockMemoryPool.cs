using System.Buffers;
using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;

namespace Relay.L4;

/// <summary>
/// A memory pool of fixed-size pinned blocks, larger than Kestrel's 4 KiB, so one socket receive can
/// read a whole burst. Blocks live on the pinned object heap; a bounded cache keeps returned blocks
/// (Kestrel SocketSenderPool caps its pool the same way) and the rest go back to the GC.
/// </summary>
internal sealed class BlockMemoryPool : MemoryPool<byte>
{
    private readonly ConcurrentQueue<Block> _cache = new();
    private readonly int _blockBytes;
    private readonly int _maxCachedBlocks;
    private int _cachedCount;
    private long _rented;

    public BlockMemoryPool(int blockBytes, int maxCachedBlocks)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(blockBytes, 4096);
        ArgumentOutOfRangeException.ThrowIfNegative(maxCachedBlocks);
        _blockBytes = blockBytes;
        _maxCachedBlocks = maxCachedBlocks;
    }

    public override int MaxBufferSize => _blockBytes;

    /// <summary>Blocks rented and not yet returned.</summary>
    public long Rented => Interlocked.Read(ref _rented);

    public override IMemoryOwner<byte> Rent(int minBufferSize = -1)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(minBufferSize, _blockBytes);
        if (_cache.TryDequeue(out var block))
        {
            Interlocked.Decrement(ref _cachedCount);
        }
        else
        {
            block = new Block(this, GC.AllocateUninitializedArray<byte>(_blockBytes, pinned: true));
        }

        block.MarkRented();
        Interlocked.Increment(ref _rented);
        return block;
    }

    protected override void Dispose(bool disposing)
    {
        while (_cache.TryDequeue(out _))
        {
        }
    }

    private void Return(Block block)
    {
        Interlocked.Decrement(ref _rented);
        if (Interlocked.Increment(ref _cachedCount) <= _maxCachedBlocks)
        {
            _cache.Enqueue(block);
        }
        else
        {
            Interlocked.Decrement(ref _cachedCount);
        }
    }

    private sealed class Block(BlockMemoryPool pool, byte[] array) : IMemoryOwner<byte>
    {
        private int _rented;

        public Memory<byte> Memory => array;

        public void MarkRented() => Volatile.Write(ref _rented, 1);

        public void Dispose()
        {
            // Guard against a double return, as YARP's StreamCopier does for its rented buffers.
            if (Interlocked.Exchange(ref _rented, 0) == 1)
            {
                pool.Return(this);
            }
        }
    }
}

/// <summary>Hands Kestrel's socket transport a <see cref="BlockMemoryPool"/>.</summary>
internal sealed class BlockMemoryPoolFactory(int blockBytes, int maxCachedBlocks) : IMemoryPoolFactory<byte>
{
    public BlockMemoryPool Pool { get; } = new(blockBytes, maxCachedBlocks);

    // Kestrel disposes the pools it creates when a listener or connection factory goes away; the
    // shared pool outlives them, so hand out a view that ignores Dispose.
    public MemoryPool<byte> Create(MemoryPoolOptions? options = null) => new NonDisposingPool(Pool);

    /// <summary>
    /// Points a transport's options at this factory. The setter is internal in .NET 10
    /// (SocketTransportOptions.MemoryPoolFactory); returns false with the reason if this runtime lacks it.
    /// </summary>
    public bool TryAttach(SocketTransportOptions options, out string? problem) => TryAttach(() => SetFactory(options, this), out problem);

    public bool TryAttach(SocketConnectionFactoryOptions options, out string? problem) => TryAttach(() => SetFactory(options, this), out problem);

    private static bool TryAttach(Action attach, out string? problem)
    {
        try
        {
            attach();
            problem = null;
            return true;
        }
        catch (MissingMethodException ex)
        {
            problem = ex.Message;
            return false;
        }
    }

    [UnsafeAccessor(UnsafeAccessorKind.Method, Name = "set_MemoryPoolFactory")]
    private static extern void SetFactory(SocketTransportOptions options, IMemoryPoolFactory<byte> factory);

    [UnsafeAccessor(UnsafeAccessorKind.Method, Name = "set_MemoryPoolFactory")]
    private static extern void SetFactory(SocketConnectionFactoryOptions options, IMemoryPoolFactory<byte> factory);

    private sealed class NonDisposingPool(BlockMemoryPool inner) : MemoryPool<byte>
    {
        public override int MaxBufferSize => inner.MaxBufferSize;

        public override IMemoryOwner<byte> Rent(int minBufferSize = -1) => inner.Rent(minBufferSize);

        protected override void Dispose(bool disposing)
        {
            // The shared pool belongs to the relay, not to the transport that asked for a view.
        }
    }
}
