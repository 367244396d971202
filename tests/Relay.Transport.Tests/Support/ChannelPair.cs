using Relay.Transport.Multipath;
using Relay.Transport.Sockets;

namespace Relay.Transport.Tests.Support;

/// <summary>Two channels joined by the given sockets, and the send-all / receive-all checks the tests share.</summary>
internal sealed class ChannelPair : IAsyncDisposable
{
    public ChannelPair(MultipathChannelOptions options, IReadOnlyList<IDatagramSocket> clientSockets, IReadOnlyList<IDatagramSocket> serverSockets)
    {
        var keys = TestKeys.Fresh();
        Client = MultipathChannel.Start(options, keys, isClient: true, clientSockets);
        Server = MultipathChannel.Start(options, keys, isClient: false, serverSockets);
    }

    public MultipathChannel Client { get; }

    public MultipathChannel Server { get; }

    public static byte[] Frame(int seq, int length)
    {
        var frame = new byte[length];
        new Random(seq).NextBytes(frame);
        BitConverter.TryWriteBytes(frame.AsSpan(0, 4), seq);
        return frame;
    }

    /// <summary>
    /// Sends <paramref name="count"/> frames (seeded sizes) from client to server and checks every
    /// frame arrives exactly once, in order, byte for byte, within <paramref name="timeout"/>.
    /// </summary>
    public async Task TransferAndVerifyAsync(int count, int minLength, int maxLength, TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        var sizes = new Random(count).Let(r => Enumerable.Range(0, count).Select(_ => r.Next(Math.Max(4, minLength), maxLength + 1)).ToArray());
        var receiver = Task.Run(async () =>
        {
            var buffer = new byte[65536];
            for (var i = 0; i < count; i++)
            {
                var n = await Server.ReceiveAsync(buffer, cts.Token);
                Assert.True(n > 0, $"channel closed after {i} frames");
                var seq = BitConverter.ToInt32(buffer, 0);
                Assert.Equal(i, seq);
                Assert.Equal(Frame(i, sizes[i]), buffer.AsSpan(0, n).ToArray());
            }
        });

        for (var i = 0; i < count; i++)
        {
            await Client.SendAsync(Frame(i, sizes[i]), cts.Token);
        }

        Client.Flush();
        await receiver.WaitAsync(cts.Token);

        // Nothing more may arrive: a duplicate would show up here.
        using var quiet = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));
        var extra = Server.ReceiveAsync(new byte[65536], quiet.Token).AsTask();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => extra);
    }

    public async ValueTask DisposeAsync()
    {
        await Client.DisposeAsync();
        await Server.DisposeAsync();
    }
}

internal static class Extensions
{
    public static TResult Let<T, TResult>(this T value, Func<T, TResult> f) => f(value);
}
