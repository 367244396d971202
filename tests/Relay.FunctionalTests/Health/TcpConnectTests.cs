using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Relay.FunctionalTests.Infrastructure;
using Relay.Health;

namespace Relay.FunctionalTests.Health;

/// <summary>The health probes' connect: outcomes as values, on real sockets.</summary>
public sealed class TcpConnectTests
{
    [Fact]
    public async Task AListeningAddress_GivesAConnectedSocket()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(4);
        var port = ((IPEndPoint)listener.LocalEndPoint!).Port;

        var outcome = await TcpConnect.ConnectAsync(new DnsEndPoint("127.0.0.1", port), TimeSpan.FromSeconds(5), TestContext.Current.CancellationToken);

        using var socket = Assert.IsType<Socket>(outcome.Socket);
        Assert.True(socket.Connected);
        Assert.Equal(SocketError.Success, outcome.Error);
        Assert.Equal(listener.LocalEndPoint, socket.RemoteEndPoint);
    }

    [Fact]
    public async Task ARefusingAddress_IsConnectionRefused_NotAnException()
    {
        var outcome = await TcpConnect.ConnectAsync(new DnsEndPoint("127.0.0.1", Ports.Unused()), TimeSpan.FromSeconds(5), TestContext.Current.CancellationToken);

        Assert.Null(outcome.Socket);
        Assert.Equal(SocketError.ConnectionRefused, outcome.Error);
        Assert.False(outcome.TimedOut);
    }

    [Fact]
    public async Task AnAddressThatNeverAnswers_TimesOutAtTheTimeout()
    {
        using var hanging = await HangingUpstream.CreateAsync();
        var watch = Stopwatch.StartNew();

        var outcome = await TcpConnect.ConnectAsync(new DnsEndPoint("127.0.0.1", hanging.EndPoint.Port), TimeSpan.FromMilliseconds(300), TestContext.Current.CancellationToken);

        Assert.Null(outcome.Socket);
        Assert.True(outcome.TimedOut, $"error {outcome.Error}, not a timeout");
        Assert.InRange(watch.Elapsed, TimeSpan.FromMilliseconds(250), TimeSpan.FromSeconds(10));
    }

    [Fact]
    public async Task CancellingTheCaller_ThrowsOperationCanceled_NotATimeout()
    {
        using var hanging = await HangingUpstream.CreateAsync();
        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(100));

        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
            await TcpConnect.ConnectAsync(new DnsEndPoint("127.0.0.1", hanging.EndPoint.Port), TimeSpan.FromSeconds(30), cts.Token));
    }
}
