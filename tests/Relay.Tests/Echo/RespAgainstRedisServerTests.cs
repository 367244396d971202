using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Relay.Echo;

namespace Relay.Tests.Echo;

/// <summary>
/// The RESP codec against what a real redis-server sends, over a real loopback socket: RESP2 replies,
/// then RESP3 after HELLO 3, with every type redis-server can produce (DEBUG PROTOCOL emits
/// attributes, pushes, big numbers, verbatim strings), framed in the chunks the socket delivers.
/// </summary>
public class RespAgainstRedisServerTests
{
    private static readonly string[] DebugTypes = ["string", "integer", "double", "bignum", "null", "array", "set", "map", "attrib", "push", "verbatim", "true", "false"];

    [Fact]
    public async Task RealRedisReplies_FrameOnePerCommand_PlusPushes()
    {
        var server = FindOnPath("redis-server");
        if (server is null)
        {
            Assert.Skip("needs redis-server (Debian package redis-server; ./run-relay.sh test installs it as root)");
        }

        var port = UnusedPort();
        using var redis = Process.Start(new ProcessStartInfo(server)
        {
            ArgumentList = { "--port", port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--enable-debug-command", "yes" },
            RedirectStandardOutput = true,
            UseShellExecute = false,
        })!;
        try
        {
            using var socket = await ConnectAsync(port, TimeSpan.FromSeconds(20));

            var (requests, commands) = BuildRequests();
            var requestSide = new MessageStream(MessageFramer.Create(CodecOptions.For(MessageCodec.Resp), StreamDirection.Request));
            Assert.True(requestSide.Feed(requests), FramingErrorText.Describe(requestSide.Error));
            Assert.Equal(commands, requestSide.Messages);
            Assert.Equal(2, requestSide.Separators); // the blank line and "*0" get no reply
            Assert.Equal(requests.Length, requestSide.SplicePoint);

            await socket.SendAsync(requests, SocketFlags.None).WaitAsync(TimeSpan.FromSeconds(10));

            // DEBUG PROTOCOL push sends a push and then its reply: one message more than commands.
            var expected = commands + 1;
            var replies = new MessageStream(MessageFramer.Create(CodecOptions.For(MessageCodec.Resp), StreamDirection.Response), new DigestLog(256));
            var received = new MemoryStream();
            var buffer = new byte[1500];
            using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(20));
            while (replies.Messages < expected)
            {
                var n = await socket.ReceiveAsync(buffer, deadline.Token);
                Assert.True(n > 0, $"redis closed the connection after {replies.Messages} replies: {Encoding.ASCII.GetString(received.ToArray())}");
                received.Write(buffer, 0, n);
                Assert.True(replies.Feed(buffer.AsSpan(0, n)), $"{FramingErrorText.Describe(replies.Error)} at {replies.ErrorOffset}");
            }

            Assert.Equal(expected, replies.Messages);
            Assert.Equal(replies.BytesFed, replies.SplicePoint);
            var all = received.ToArray();
            var text = Encoding.ASCII.GetString(all);
            foreach (var marker in new[] { "\r\n|1\r\n", "\r\n>2\r\n", "\r\n=29\r\n", "\r\n(", "\r\n,", "\r\n~3\r\n", "\r\n%3\r\n", "\r\n#t\r\n", "\r\n_\r\n", "$-1\r\n", "-ERR" })
            {
                Assert.Contains(marker, text, StringComparison.Ordinal); // the run did exercise this type
            }

            var whole = FramingHarness.Whole(MessageFramer.Create(CodecOptions.For(MessageCodec.Resp), StreamDirection.Response), all);
            Assert.Equal(expected, whole.Boundaries.Count);
            var chunked = FramingHarness.Random(MessageFramer.Create(CodecOptions.For(MessageCodec.Resp), StreamDirection.Response), all, new Random(9), 5);
            Assert.Equal(whole.Boundaries, chunked.Boundaries);
        }
        finally
        {
            redis.Kill();
            await redis.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
        }
    }

    private static (byte[] Bytes, int Commands) BuildRequests()
    {
        var text = new StringBuilder();
        var commands = 0;
        void Bulk(params string[] args)
        {
            text.Append('*').Append(args.Length).Append("\r\n");
            foreach (var arg in args)
            {
                text.Append('$').Append(Encoding.ASCII.GetByteCount(arg)).Append("\r\n").Append(arg).Append("\r\n");
            }

            commands++;
        }

        void Inline(string line)
        {
            text.Append(line).Append("\r\n");
            commands++;
        }

        // RESP2
        Inline("PING");
        Bulk("SET", "echo:k", "a value\r\nwith CRLF inside");
        Bulk("GET", "echo:k");
        Bulk("GET", "echo:missing"); // $-1
        Bulk("INCR", "echo:n");
        Bulk("RPUSH", "echo:l", "a", "b", "c");
        Bulk("LRANGE", "echo:l", "0", "-1");
        Inline("NOSUCHCOMMAND x");
        text.Append("\r\n"); // blank inline line: no reply
        text.Append("*0\r\n"); // empty multibulk: no reply
        Inline("SADD echo:s x y z");
        Inline("HSET echo:h f1 v1 f2 v2");

        // RESP3
        Bulk("HELLO", "3");
        foreach (var type in DebugTypes)
        {
            Bulk("DEBUG", "PROTOCOL", type);
        }

        Bulk("SMEMBERS", "echo:s");
        Bulk("HGETALL", "echo:h");
        Bulk("ZADD", "echo:z", "1.5", "m");
        Bulk("ZSCORE", "echo:z", "m");
        Bulk("CLIENT", "INFO");
        Bulk("GET", "echo:missing"); // _
        Inline("PING");
        return (Encoding.ASCII.GetBytes(text.ToString()), commands);
    }

    private static async Task<Socket> ConnectAsync(int port, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                await socket.ConnectAsync(IPAddress.Loopback, port).WaitAsync(TimeSpan.FromSeconds(5));
                return socket;
            }
            catch (SocketException) when (DateTime.UtcNow < deadline)
            {
                socket.Dispose();
                await Task.Delay(50);
            }
        }
    }

    private static int UnusedPort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static string? FindOnPath(string name) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Select(dir => Path.Combine(dir, name))
            .FirstOrDefault(File.Exists);
}
