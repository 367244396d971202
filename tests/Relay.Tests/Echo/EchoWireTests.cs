using System.Net;
using Relay.Echo;

namespace Relay.Tests.Echo;

public sealed class EchoWireTests
{
    [Fact]
    public void EchoFramesRoundTrip()
    {
        var buffer = new byte[8192];
        var open = new OpenFrame(42, MessageCodec.Resp, 196_608);
        Assert.True(EchoWire.TryReadOpen(buffer.AsSpan(0, EchoWire.WriteOpen(buffer, open)), out var openBack));
        Assert.Equal(open, openBack);

        EchoWire.WriteDataHeader(buffer, 42, 1_000_000);
        "hello"u8.CopyTo(buffer.AsSpan(EchoWire.DataHeaderBytes));
        Assert.True(EchoWire.TryReadData(buffer.AsSpan(0, EchoWire.DataHeaderBytes + 5), out var session, out var offset, out var bytes));
        Assert.Equal((42L, 1_000_000L, "hello"), (session, offset, System.Text.Encoding.ASCII.GetString(bytes)));

        DigestEntry[] entries = [new(0, 10, 0xdeadbeef), new(1, 25, ulong.MaxValue)];
        var length = EchoWire.WriteDigests(buffer, 42, 2, entries);
        Assert.True(EchoWire.TryReadDigestsHeader(buffer.AsSpan(0, length), out session, out var delivered, out var count));
        Assert.Equal((42L, 2L, 2), (session, delivered, count));
        Assert.Equal(entries[1], EchoWire.ReadDigestEntry(buffer.AsSpan(0, length), 1));

        var ack = new AckFrame(42, 123, 7, DigestStatus.Diverged, 5, BackendClosed: true);
        Assert.True(EchoWire.TryReadAck(buffer.AsSpan(0, EchoWire.WriteAck(buffer, ack)), out var ackBack));
        Assert.Equal(ack, ackBack);

        Assert.True(EchoWire.TryReadClose(buffer.AsSpan(0, EchoWire.WriteClose(buffer, 42)), out session));
        Assert.Equal(42, session);
        Assert.True(EchoWire.TryReadShadowFailed(EchoWire.ShadowFailed(42, "backend refused"), out session, out var reason));
        Assert.Equal((42L, "backend refused"), (session, reason));
    }

    [Fact]
    public void ControlMessagesRoundTrip()
    {
        var hello = new HelloRequest(EchoWire.Version, -77, ConnectionPurpose.Echo, [new IPEndPoint(IPAddress.Loopback, 4000), new IPEndPoint(IPAddress.IPv6Loopback, 4001)]);
        Assert.True(EchoWire.TryReadHello(EchoWire.Hello(hello), out var helloBack));
        Assert.Equal((hello.Version, hello.RelayId, hello.Purpose), (helloBack.Version, helloBack.RelayId, helloBack.Purpose));
        Assert.Equal(hello.RelayPaths, helloBack.RelayPaths);

        Assert.True(EchoWire.TryReadHelloOk(EchoWire.HelloOk(new HelloAnswer("game-b", [new IPEndPoint(IPAddress.Loopback, 5000)])), out var answer));
        Assert.Equal("game-b", answer.AgentId);

        var takeover = new TakeoverRequest(1, 2, 300, 4, true, 250, 50);
        Assert.True(EchoWire.TryReadTakeover(EchoWire.Takeover(takeover), out var takeoverBack));
        Assert.Equal(takeover, takeoverBack);
        Assert.True(EchoWire.TryReadTakeoverPrepare(EchoWire.TakeoverPrepare(7, 8), out var preparedRelay, out var preparedSession));
        Assert.Equal((7L, 8L), (preparedRelay, preparedSession));
        Assert.True(EchoWire.IsTakeoverPrepared(EchoWire.TakeoverPrepared()));
        Assert.False(EchoWire.TryReadTakeover(EchoWire.TakeoverPrepare(7, 8), out _));
        Assert.True(EchoWire.TryReadTakeoverOk(EchoWire.TakeoverOk(99), out var cut));
        Assert.Equal(99, cut);
        Assert.True(EchoWire.TryReadRefused(EchoWire.Refused("unknown session 2"), out var refused));
        Assert.Equal("unknown session 2", refused);
        var heartbeat = new HeartbeatFrame(12.5, 1 << 30, 3, 40, 4L << 30);
        Assert.True(EchoWire.TryReadHeartbeat(EchoWire.Heartbeat(heartbeat), out var heartbeatBack));
        Assert.Equal(heartbeat, heartbeatBack);
    }

    [Fact]
    public void MalformedMessagesAreRefusedWithoutThrowing()
    {
        // A takeover whose tail does not end at inOffset, an ack with an unknown status, truncations.
        Assert.False(EchoWire.TryReadTakeover(EchoWire.Takeover(new TakeoverRequest(1, 2, 300, 4, true, 250, 49)), out _));
        var ack = new byte[EchoWire.AckBytes];
        EchoWire.WriteAck(ack, new AckFrame(1, 2, 3, DigestStatus.Match, -1, false));
        ack[25] = 200;
        Assert.False(EchoWire.TryReadAck(ack, out _));

        var random = new Random(7);
        var buffer = new byte[300];
        for (var i = 0; i < 20_000; i++)
        {
            var length = random.Next(0, buffer.Length);
            random.NextBytes(buffer.AsSpan(0, length));
            var span = buffer.AsSpan(0, length);
            if (length > 0)
            {
                span[0] = (byte)(random.Next(2) == 0 ? random.Next(256) : new[] { 1, 2, 3, 4, 16, 17, 18, 19, 20, 32, 33, 34, 35, 48, 49 }[random.Next(15)]);
            }

            _ = EchoWire.TryReadOpen(span, out _);
            _ = EchoWire.TryReadData(span, out _, out _, out _);
            if (EchoWire.TryReadDigestsHeader(span, out _, out _, out var count))
            {
                for (var e = 0; e < count; e++)
                {
                    _ = EchoWire.ReadDigestEntry(span, e);
                }
            }

            _ = EchoWire.TryReadAck(span, out _);
            _ = EchoWire.TryReadClose(span, out _);
            _ = EchoWire.TryReadShadowFailed(span, out _, out _);
            _ = EchoWire.TryReadHello(span, out _);
            _ = EchoWire.TryReadHelloOk(span, out _);
            _ = EchoWire.TryReadRefused(span, out _);
            _ = EchoWire.TryReadTakeover(span, out _);
            _ = EchoWire.TryReadTakeoverOk(span, out _);
            _ = EchoWire.TryReadTakeoverPrepare(span, out _, out _);
            _ = EchoWire.IsTakeoverPrepared(span);
            _ = EchoWire.TryReadHeartbeat(span, out _);
        }
    }
}
