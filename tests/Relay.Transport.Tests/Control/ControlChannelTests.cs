using System.Net;
using System.Net.Sockets;
using System.Security.Authentication;
using Relay.Transport.Control;
using Relay.Transport.Multipath;
using Relay.Transport.Tests.Sockets;
using Relay.Transport.Tests.Support;

namespace Relay.Transport.Tests.Control;

public class ControlChannelTests
{
    private static async Task<(ControlChannel Client, Task<ControlChannel> Server, Socket Listener)> ConnectAsync(byte[] clientPsk, byte[] serverPsk, CancellationToken ct)
    {
        var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        var server = Task.Run(async () => await ControlChannel.AcceptAsync(await listener.AcceptAsync(ct), serverPsk, ct), ct);
        var client = await ControlChannel.ConnectAsync(listener.LocalEndPoint!, clientPsk, ct);
        return (client, server, listener);
    }

    [Fact]
    public async Task Handshake_DerivesSameKeys_AndMessagesFlowBothWays()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var (client, serverTask, listener) = await ConnectAsync(TestKeys.Psk, TestKeys.Psk, cts.Token);
        using var _ = listener;
        await using var c = client;
        await using var server = await serverTask.WaitAsync(cts.Token);

        Assert.True(client.IsClient);
        Assert.False(server.IsClient);
        Assert.Equal(client.Keys.ClientToServer.Key, server.Keys.ClientToServer.Key);

        await client.SendAsync("TAKEOVER session=42"u8.ToArray(), cts.Token);
        await client.SendAsync(new byte[100_000], cts.Token);
        Assert.Equal("TAKEOVER session=42"u8.ToArray(), await server.ReceiveAsync(cts.Token));
        Assert.Equal(100_000, (await server.ReceiveAsync(cts.Token))!.Length);
        await server.SendAsync("OK"u8.ToArray(), cts.Token);
        Assert.Equal("OK"u8.ToArray(), await client.ReceiveAsync(cts.Token));

        await client.DisposeAsync();
        Assert.Null(await server.ReceiveAsync(cts.Token));
    }

    [Fact]
    public async Task WrongPsk_FailsOnBothSides()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        using var _ = listener;
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        var serverTask = Task.Run(async () => await ControlChannel.AcceptAsync(await listener.AcceptAsync(cts.Token), TestKeys.Psk, cts.Token), cts.Token);
        var wrong = Enumerable.Repeat((byte)1, 32).ToArray();
        await Assert.ThrowsAsync<AuthenticationException>(() => ControlChannel.ConnectAsync(listener.LocalEndPoint!, wrong, cts.Token));
        await Assert.ThrowsAnyAsync<Exception>(() => serverTask.WaitAsync(cts.Token));
    }

    [Fact]
    public async Task TamperedMessage_FailsAuthentication()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var (a, b) = DuplexStream.CreatePair();
        var serverTask = ControlChannel.HandshakeAsync(b, TestKeys.Psk, isClient: false, cts.Token);
        await using var client = await ControlChannel.HandshakeAsync(a, TestKeys.Psk, isClient: true, cts.Token);
        await using var server = await serverTask.WaitAsync(cts.Token);
        a.CorruptNextWrite = true;
        await client.SendAsync("hello"u8.ToArray(), cts.Token);
        await Assert.ThrowsAsync<AuthenticationException>(async () => await server.ReceiveAsync(cts.Token));
    }

    [Fact]
    public async Task ControlHandshakeKeys_DriveADatagramChannel()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var (client, serverTask, listener) = await ConnectAsync(TestKeys.Psk, TestKeys.Psk, cts.Token);
        using var _ = listener;
        await using var c = client;
        await using var server = await serverTask.WaitAsync(cts.Token);
        var (cs, ss) = UdpLoopbackTests.SocketPairs(2);
        var options = new MultipathChannelOptions();
        await using var clientChannel = MultipathChannel.Start(options, client.Keys, client.IsClient, cs);
        await using var serverChannel = MultipathChannel.Start(options, server.Keys, server.IsClient, ss);
        await clientChannel.SendAsync("frame"u8.ToArray(), cts.Token);
        clientChannel.Flush();
        var buffer = new byte[options.MaxFrameBytes];
        var n = await serverChannel.ReceiveAsync(buffer, cts.Token);
        Assert.Equal("frame"u8.ToArray(), buffer.AsSpan(0, n).ToArray());
    }
}
