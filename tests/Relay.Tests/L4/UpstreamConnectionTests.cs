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

    /// <summary>A loopback listener and a client socket connected to it (not yet accepted).</summary>
    private static async Task<(Socket Listener, Socket Client)> ConnectToNewListenerAsync(CancellationToken ct)
    {
        var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(4);
        var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await client.ConnectAsync(listener.LocalEndPoint!, ct);
        return (listener, client);
    }
}
