using System.Net.Sockets;
using System.Security.Cryptography;
using Relay.FunctionalTests.Infrastructure;
using Relay.L4;
using Relay.Transport.Sockets;
using static Relay.FunctionalTests.L4.L4RelayTests;

namespace Relay.FunctionalTests.L4;

/// <summary>
/// Which socket layer serves L4 routes: the relay's epoll reactors by default (where supported), or
/// the runtime's socket engine with <c>tuning.epoll: false</c>. The other L4 tests run on the default;
/// these check the registration's life and that the fallback still carries a session.
/// </summary>
public class L4TransportTests
{
    [Fact]
    public async Task ByDefault_ASessionRunsOnTheReactor_AndBothSocketsLeaveItWhenTheSessionEnds()
    {
        if (!EpollReactor.IsSupported)
        {
            Assert.Skip("the epoll reactor needs Linux on x86-64");
        }

        await using var upstream = TestUpstream.Echo();
        await using var relay = await TestRelay.StartAsync(Config(Endpoint("e1", upstream.Address)));
        var reactors = relay.App.L4Listeners.Reactors;
        Assert.NotNull(reactors);
        Assert.Equal(0, reactors.Registered);

        using var client = await relay.ConnectAsync("r");
        var payload = RandomNumberGenerator.GetBytes(1024 * 1024 + 3);
        var send = client.SendAllAsync(payload);
        Assert.Equal(SHA256.HashData(payload), SHA256.HashData(await client.ReceiveExactlyAsync(payload.Length)));
        await send;

        var session = Assert.Single(relay.App.Runtime.Sessions.Values);
        Assert.IsType<EpollConnection>(session.Client);
        Assert.Equal(2, reactors.Registered); // the client's socket and the upstream's
        Assert.Contains("relay_l4_reactor_sockets 2", relay.Metrics());

        client.Shutdown(SocketShutdown.Both);
        client.Close();
        await relay.Log.WaitForAsync("SessionEnded", TimeSpan.FromSeconds(10));
        await WaitUntilAsync(() => reactors.Registered == 0, "the session's sockets are still registered");
        Assert.Contains("relay_l4_reactor_sockets 0", relay.Metrics());
    }

    [Fact]
    public async Task WithEpollOff_TheRuntimeSocketEngineCarriesTheSession_BothWaysAndThroughAHalfClose()
    {
        // Answers with the digest of everything it read, once the client has finished sending.
        await using var upstream = new TestUpstream(async (socket, ct) =>
        {
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            var buffer = new byte[64 * 1024];
            int read;
            while ((read = await socket.ReceiveAsync(buffer, SocketFlags.None, ct)) > 0)
            {
                hash.AppendData(buffer, 0, read);
                await socket.SendAsync(buffer.AsMemory(0, read), SocketFlags.None, ct);
            }

            await socket.SendAsync(hash.GetHashAndReset(), SocketFlags.None, ct);
            socket.Shutdown(SocketShutdown.Send);
        });
        var config = Config(Endpoint("e1", upstream.Address)).Insert(1, """ "tuning": { "epoll": false }, """);
        await using var relay = await TestRelay.StartAsync(config);
        Assert.Null(relay.App.L4Listeners.Reactors);

        using var client = await relay.ConnectAsync("r");
        await WaitUntilAsync(() => !relay.App.Runtime.Sessions.IsEmpty, "the session did not start");
        Assert.IsNotType<EpollConnection>(Assert.Single(relay.App.Runtime.Sessions.Values).Client);
        var payload = RandomNumberGenerator.GetBytes(2 * 1024 * 1024 + 9);
        var receive = client.ReceiveExactlyAsync(payload.Length + 32 + 1);
        await client.SendAllAsync(payload);
        client.Shutdown(SocketShutdown.Send);
        var answer = await receive;
        Assert.Equal(payload.Length + 32, answer.Length);
        Assert.Equal(SHA256.HashData(payload), SHA256.HashData(answer.AsSpan(0, payload.Length)));
        Assert.Equal(SHA256.HashData(payload), answer[payload.Length..]);
    }

    private static async Task WaitUntilAsync(Func<bool> condition, string because)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, because);
            await Task.Delay(20, TestContext.Current.CancellationToken);
        }
    }
}
