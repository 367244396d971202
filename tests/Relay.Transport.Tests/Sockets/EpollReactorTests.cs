using System.Net;
using System.Net.Sockets;
using Relay.Transport.Sockets;

namespace Relay.Transport.Tests.Sockets;

/// <summary>The relay's own epoll reactor on real loopback TCP sockets.</summary>
public sealed class EpollReactorTests : IDisposable
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(5);
    private readonly EpollReactor? _reactor;
    private readonly Socket _listener;

    public EpollReactorTests()
    {
        if (EpollReactor.IsSupported)
        {
            _reactor = EpollReactor.Create("test epoll");
        }

        _listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _listener.Listen(8);
    }

    public void Dispose()
    {
        _reactor?.Dispose();
        _listener.Dispose();
    }

    [Fact]
    public async Task ReadWait_CompletesOnlyWhenDataArrives_AndAnEarlierEdgeCompletesItAtOnce()
    {
        var reactor = Reactor();
        var (local, peer) = await PairAsync();
        using (local)
        using (peer)
        using (var readiness = reactor.Register(local))
        {
            var buffer = new byte[64];

            // Nothing to read: the wait stays pending (a registration reports no data it does not have).
            await DrainAsync(local, readiness, buffer);
            var wait = readiness.Readable.WaitAsync().AsTask();
            await Task.Delay(100, TestContext.Current.CancellationToken);
            Assert.False(wait.IsCompleted, "a read wait completed with nothing sent");

            peer.Send("hello"u8);
            await wait.WaitAsync(Patience, TestContext.Current.CancellationToken);
            Assert.Equal(5, local.Receive(buffer, SocketFlags.None, out var error));
            Assert.Equal(SocketError.Success, error);

            // Data that arrives while nobody waits leaves the edge set: the next wait completes at once.
            peer.Send("again"u8);
            await WaitUntilAsync(() => local.Available == 5);
            await readiness.Readable.WaitAsync().AsTask().WaitAsync(Patience, TestContext.Current.CancellationToken);
            Assert.Equal(5, local.Receive(buffer, SocketFlags.None, out error));
            Assert.False(readiness.Readable.HangUp);
        }

        Assert.Equal(0, reactor.Registered);
    }

    [Fact]
    public async Task PeersFin_IsMarkedAsHangUp_SoAShortReadIsNotTakenForEmpty()
    {
        var reactor = Reactor();
        var (local, peer) = await PairAsync();
        using (local)
        using (peer)
        using (var readiness = reactor.Register(local))
        {
            // Data and FIN together: one edge announces both, and the short read of the data is not the end.
            peer.Send(new byte[10]);
            peer.Shutdown(SocketShutdown.Send);
            await readiness.Readable.WaitAsync().AsTask().WaitAsync(Patience, TestContext.Current.CancellationToken);
            await WaitUntilAsync(() => readiness.Readable.HangUp);
            var buffer = new byte[64];
            Assert.Equal(10, local.Receive(buffer, SocketFlags.None, out _));
            Assert.Equal(0, local.Receive(buffer, SocketFlags.None, out var error));
            Assert.Equal(SocketError.Success, error);
        }
    }

    [Fact]
    public async Task WriteWait_AfterAFullBuffer_CompletesWhenThePeerReads()
    {
        var reactor = Reactor();
        var (local, peer) = await PairAsync();
        using (local)
        using (peer)
        using (var readiness = reactor.Register(local))
        {
            local.SendBufferSize = 16 * 1024;
            peer.ReceiveBufferSize = 16 * 1024;

            // Fill until the kernel refuses, let the last acks settle, and fill again: the peer's
            // window is shut now, so no room can appear until it reads. Edges from before are spent
            // ahead of that last fill, never after it: an edge after its refusal is a real one.
            FillUntilFull(local);
            await Task.Delay(100, TestContext.Current.CancellationToken);
            readiness.Writable.Consume();
            FillUntilFull(local);
            var wait = readiness.Writable.WaitAsync().AsTask();
            await Task.Delay(100, TestContext.Current.CancellationToken);
            Assert.False(wait.IsCompleted, "a write wait completed while the buffer was full");

            var sink = new byte[1024 * 1024];
            using var cts = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
            cts.CancelAfter(Patience);
            while (!wait.IsCompleted)
            {
                await peer.ReceiveAsync(sink, SocketFlags.None, cts.Token);
            }

            await wait;
        }
    }

    [Fact]
    public async Task Dispose_EndsAPendingWait_AndFreesTheSlotForTheNextSocket()
    {
        var reactor = Reactor();
        var (local, peer) = await PairAsync();
        using (local)
        using (peer)
        {
            var readiness = reactor.Register(local);
            await DrainAsync(local, readiness, new byte[64]);
            var wait = readiness.Readable.WaitAsync().AsTask();
            Assert.Equal(1, reactor.Registered);
            readiness.Dispose();
            await wait.WaitAsync(Patience, TestContext.Current.CancellationToken);
            Assert.True(readiness.Readable.IsClosed);
            Assert.Equal(0, reactor.Registered);

            // A closed signal completes every later wait at once, so a loop that checks IsClosed ends.
            await readiness.Readable.WaitAsync().AsTask().WaitAsync(Patience, TestContext.Current.CancellationToken);
        }

        var (again, againPeer) = await PairAsync();
        using (again)
        using (againPeer)
        using (var readiness = reactor.Register(again))
        {
            await DrainAsync(again, readiness, new byte[64]);
            var wait = readiness.Readable.WaitAsync().AsTask();
            againPeer.Send("x"u8);
            await wait.WaitAsync(Patience, TestContext.Current.CancellationToken);
        }
    }

    private static void FillUntilFull(Socket socket)
    {
        var chunk = new byte[64 * 1024];
        long sent = 0;
        while (true)
        {
            var n = socket.Send(chunk, SocketFlags.None, out var error);
            if (error == SocketError.WouldBlock)
            {
                return;
            }

            Assert.Equal(SocketError.Success, error);
            sent += n;
            Assert.True(sent < 64L * 1024 * 1024, "loopback took 64 MiB without filling up");
        }
    }

    private EpollReactor Reactor()
    {
        if (_reactor is null)
        {
            Assert.Skip("the epoll reactor needs Linux on x86-64");
        }

        return _reactor;
    }

    private async Task<(Socket Local, Socket Peer)> PairAsync()
    {
        var local = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await local.ConnectAsync(_listener.LocalEndPoint!, TestContext.Current.CancellationToken);
        var peer = await _listener.AcceptAsync(TestContext.Current.CancellationToken);
        return (local, peer);
    }

    /// <summary>Spends the edges a new registration may report, so the next wait is a real one.</summary>
    private static async Task DrainAsync(Socket socket, SocketReadiness readiness, byte[] buffer)
    {
        await Task.Delay(50, TestContext.Current.CancellationToken);
        readiness.Readable.Consume();
        socket.Receive(buffer, SocketFlags.None, out var error);
        Assert.Equal(SocketError.WouldBlock, error);
    }

    private static async Task WaitUntilAsync(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow + Patience;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "condition not met in time");
            await Task.Delay(10, TestContext.Current.CancellationToken);
        }
    }
}
