using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Relay.L4;

namespace Relay.Tests.L4;

public sealed class UpstreamConnectionTests
{
    [Fact]
    public async Task AConnectionResetBeforeItIsWrapped_FailsAsAReset_NotInItsConstructor()
    {
        // A connect that lands in a dying listener's backlog: the handshake completes, then the
        // listener closes without accepting and the kernel resets the connection. The relay's
        // natural-end probe meets exactly this after a backend is killed; an exception from the
        // wrapper's constructor once ended the session it was probing for.
        var ct = TestContext.Current.CancellationToken;
        var (listener, client) = await ConnectToNewListenerAsync(ct);
        using var listening = listener;
        listener.Close();

        // Wait for the reset to arrive (it makes the socket readable) without asking the socket for
        // its peer first: the first failed getpeername is what threw.
        Assert.True(client.Poll(TimeSpan.FromSeconds(5), SelectMode.SelectRead), "the kernel did not reset the un-accepted connection");

        await using var connection = new UpstreamConnection(client, new PipeOptions());
        Assert.Null(connection.RemoteEndPoint);
        var failed = false;
        try
        {
            var read = await connection.Transport.Input.ReadAsync(ct).AsTask().WaitAsync(TimeSpan.FromSeconds(5), ct);
            failed = read.IsCompleted && read.Buffer.IsEmpty;
        }
        catch (Exception ex) when (ex is IOException or SocketException or ConnectionResetException)
        {
            failed = true;
        }

        Assert.True(failed, "a read on the reset connection neither failed nor ended");
    }

    [Fact]
    public async Task LocalAddressAndId_AreTheSockets_AskedForLate_AndTheAddressIsNullOnceClosed()
    {
        // Both are made on first use (a plain session never asks); they must still be the socket's.
        var ct = TestContext.Current.CancellationToken;
        var (listener, client) = await ConnectToNewListenerAsync(ct);
        using var listening = listener;
        using var accepted = await listener.AcceptAsync(ct);
        var handle = client.Handle;

        var connection = new UpstreamConnection(client, new PipeOptions());
        Assert.Equal(accepted.LocalEndPoint, connection.RemoteEndPoint);
        Assert.Equal(accepted.RemoteEndPoint, connection.LocalEndPoint);
        Assert.Equal($"upstream-{handle}", connection.ConnectionId);

        var closed = new UpstreamConnection(new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp), new PipeOptions());
        await closed.DisposeAsync();
        Assert.Null(closed.LocalEndPoint);
        Assert.StartsWith("upstream-", closed.ConnectionId, StringComparison.Ordinal);
        await connection.DisposeAsync();
    }

    [Fact]
    public async Task Probe_ADyingListenersBacklog_IsDead_EvenWhenItsResetComesLate()
    {
        // After a kill -9, the backend's listener can outlive its connections' FINs: the probe's
        // connect completes in its backlog, and the reset comes only when the listener closes. Under
        // load that took more than the 50 ms the probe used to hold, so a killed primary looked alive
        // and its session ended instead of failing over. Here the listener never accepts and closes
        // 150 ms after the probe connected, well inside the probe's hold.
        var ct = TestContext.Current.CancellationToken;
        using var listener = NewListener();
        var probe = UpstreamConnector.AcceptsConnectionsAsync(AddressOf(listener), TimeProvider.System);
        await Task.Delay(150, ct);
        listener.Close();
        Assert.Null(await probe.WaitAsync(TimeSpan.FromSeconds(10), ct));
    }

    [Fact]
    public async Task Probe_AListenerThatAnswersNoSyn_IsDead_WithinTheConnectBudget()
    {
        // A full accept queue drops SYNs, as a closing listener can: both attempts go unanswered.
        var ct = TestContext.Current.CancellationToken;
        using var listener = NewListener(backlog: 0);
        var fillers = new List<Socket>();
        try
        {
            for (var i = 0; i < 4; i++)
            {
                var filler = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                fillers.Add(filler);
                using var quick = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));
                try
                {
                    await filler.ConnectAsync(listener.LocalEndPoint!, quick.Token);
                }
                catch (OperationCanceledException)
                {
                    break; // the queue is full: SYNs are dropped from here on
                }
            }

            var started = TimeProvider.System.GetTimestamp();
            Assert.Null(await UpstreamConnector.AcceptsConnectionsAsync(AddressOf(listener), TimeProvider.System).WaitAsync(TimeSpan.FromSeconds(10), ct));
            Assert.InRange(TimeProvider.System.GetElapsedTime(started), UpstreamConnector.ProbeConnectTimeout - TimeSpan.FromMilliseconds(10), TimeSpan.FromSeconds(5));
        }
        finally
        {
            fillers.ForEach(f => f.Dispose());
        }
    }

    [Fact]
    public async Task Probe_ALiveServer_SilentGreetingOrClosing_IsAlive_AndNoListenerIsDead()
    {
        var ct = TestContext.Current.CancellationToken;

        // Accepts and says nothing (a Redis, a game server waiting for its client): alive after the hold.
        using var silent = NewListener();
        var accepting = silent.AcceptAsync(ct).AsTask();
        var started = TimeProvider.System.GetTimestamp();
        Assert.Equal("it accepted a new connection and kept it open for 250 ms", await UpstreamConnector.AcceptsConnectionsAsync(AddressOf(silent), TimeProvider.System).WaitAsync(TimeSpan.FromSeconds(10), ct));
        Assert.True(TimeProvider.System.GetElapsedTime(started) >= UpstreamConnector.ProbeHold - TimeSpan.FromMilliseconds(5), "the probe did not hold the connection");
        using var silentPeer = await accepting;

        // Greets at once: alive without waiting for the hold.
        using var greeting = NewListener();
        var greeted = Task.Run(async () =>
        {
            using var peer = await greeting.AcceptAsync(ct);
            await peer.SendAsync("+OK hello\r\n"u8.ToArray(), SocketFlags.None, ct);
            await Task.Delay(1000, ct);
        }, ct);
        Assert.Equal("it accepted a new connection and sent 11 byte(s) on it", await UpstreamConnector.AcceptsConnectionsAsync(AddressOf(greeting), TimeProvider.System, hold: TimeSpan.FromSeconds(30)).WaitAsync(TimeSpan.FromSeconds(10), ct));

        // Reads the probe's FIN and closes: a live process answering, alive.
        using var closing = NewListener();
        var closed = Task.Run(async () =>
        {
            using var peer = await closing.AcceptAsync(ct);
            var buffer = new byte[16];
            while (await peer.ReceiveAsync(buffer, SocketFlags.None, ct) > 0)
            {
            }

            peer.Shutdown(SocketShutdown.Both);
        }, ct);
        Assert.Equal("it accepted a new connection and closed it in answer to ours", await UpstreamConnector.AcceptsConnectionsAsync(AddressOf(closing), TimeProvider.System, hold: TimeSpan.FromSeconds(30)).WaitAsync(TimeSpan.FromSeconds(10), ct));
        await closed;

        // Nothing listens any more: refused, dead.
        var stopped = NewListener();
        var gone = AddressOf(stopped);
        stopped.Close();
        Assert.Null(await UpstreamConnector.AcceptsConnectionsAsync(gone, TimeProvider.System).WaitAsync(TimeSpan.FromSeconds(10), ct));
        await greeted;
    }

    private static Socket NewListener(int backlog = 4)
    {
        var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(backlog);
        return listener;
    }

    private static DnsEndPoint AddressOf(Socket listener)
    {
        var ip = (IPEndPoint)listener.LocalEndPoint!;
        return new DnsEndPoint(ip.Address.ToString(), ip.Port);
    }

    /// <summary>A loopback listener and a client socket connected to it (not yet accepted).</summary>
    private static async Task<(Socket Listener, Socket Client)> ConnectToNewListenerAsync(CancellationToken ct)
    {
        var listener = NewListener();
        var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await client.ConnectAsync(listener.LocalEndPoint!, ct);
        return (listener, client);
    }
}
