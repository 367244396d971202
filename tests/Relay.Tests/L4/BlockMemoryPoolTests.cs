using Relay.L4;

namespace Relay.Tests.L4;

public class BlockMemoryPoolTests
{
    [Fact]
    public void Rent_GivesWholeBlocks_AndReturnedBlocksAreReused()
    {
        using var pool = new BlockMemoryPool(64 * 1024, maxCachedBlocks: 2);
        var first = pool.Rent(100);
        Assert.Equal(64 * 1024, first.Memory.Length);
        var memory = first.Memory;
        first.Dispose();
        first.Dispose(); // a second return is ignored
        Assert.Equal(0, pool.Rented);
        using var again = pool.Rent();
        Assert.True(again.Memory.Span == memory.Span, "the cached block should be handed out again");
        Assert.Throws<ArgumentOutOfRangeException>(() => pool.Rent(64 * 1024 + 1));
    }

    [Fact]
    public void TheCache_IsBounded()
    {
        using var pool = new BlockMemoryPool(4096, maxCachedBlocks: 2);
        var blocks = Enumerable.Range(0, 5).Select(_ => pool.Rent()).ToList();
        Assert.Equal(5, pool.Rented);
        blocks.ForEach(b => b.Dispose());
        var reused = Enumerable.Range(0, 5).Select(_ => pool.Rent()).Count(b => blocks.Any(old => old.Memory.Span == b.Memory.Span));
        Assert.Equal(2, reused);
    }

    [Fact]
    public void TheFactory_AttachesToKestrelsTransportOptions()
    {
        var factory = new BlockMemoryPoolFactory(64 * 1024, 4);
        Assert.True(factory.TryAttach(new Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets.SocketTransportOptions(), out var problem), problem);
        Assert.True(factory.TryAttach(new Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets.SocketConnectionFactoryOptions(), out problem), problem);
    }
}
