using System.Net;
using System.Text;
using Relay.FunctionalTests.Infrastructure;
using Relay.FunctionalTests.L4;
using Relay.SampleServer;

namespace Relay.FunctionalTests.SampleServer;

public class SampleServerTests
{
    private static readonly string[] s_script = ["HELLO", "MOVE 1 2", "MOVE -3 4", "SCORE 10", "ECHO hi there", "BOGUS", "MOVE x", "STATE", "SCORE -4", "STATE"];

    [Fact]
    public async Task TwoServers_ThroughTheRelay_AnswerTheSameScriptByteForByte()
    {
        await using var a = new SampleServerHost(new IPEndPoint(IPAddress.Loopback, 0), "a");
        await using var b = new SampleServerHost(new IPEndPoint(IPAddress.Loopback, 0), "b");
        a.Start();
        b.Start();
        await using var relay = await TestRelay.StartAsync(L4RelayTests.Config(
            L4RelayTests.Endpoint("a", $"127.0.0.1:{a.LocalEndPoint.Port}") + "," + L4RelayTests.Endpoint("b", $"127.0.0.1:{b.LocalEndPoint.Port}"),
            cluster: """, "loadBalancing": "roundRobin" """));

        var transcripts = new List<string>();
        var servers = new List<string>();
        for (var i = 0; i < 2; i++)
        {
            using var client = await relay.ConnectAsync("r");
            await client.SendAllAsync(Encoding.UTF8.GetBytes(string.Join("\n", s_script) + "\nWHO\nQUIT\n"));
            var lines = new List<string>();
            for (var line = 0; line < s_script.Length + 2; line++)
            {
                lines.Add(await client.ReadLineAsync());
            }

            Assert.Equal(0, await client.ReceiveUntilClosedAsync(TimeSpan.FromSeconds(10)));
            servers.Add(lines[^2]);
            transcripts.Add(string.Join("\n", lines.Take(s_script.Length)));
        }

        Assert.Equal(transcripts[0], transcripts[1]);
        Assert.Equal(["11 WHO a", "11 WHO b"], servers.Order(StringComparer.Ordinal));
        var expected = string.Join("\n",
            "1 WELCOME sample-protocol 1",
            "2 POS 1 2",
            "3 POS -2 6",
            "4 SCORE 10",
            "5 ECHO hi there",
            "6 ERR unknown command \"BOGUS\" (HELLO, MOVE, SCORE, ECHO, STATE, WHO, QUIT)",
            "7 ERR usage: MOVE <dx> <dy> (whole numbers from -1000000 to 1000000)");
        Assert.StartsWith(expected, transcripts[0], StringComparison.Ordinal);
        Assert.Matches(@"\n8 STATE -2 6 10 8 [0-9a-f]{16}\n9 SCORE 6\n10 STATE -2 6 6 10 [0-9a-f]{16}$", transcripts[0]);
    }

    [Fact]
    public async Task StateDigest_DependsOnTheWholeHistory()
    {
        await using var server = new SampleServerHost(new IPEndPoint(IPAddress.Loopback, 0), "s");
        server.Start();
        async Task<string> RunAsync(string script)
        {
            using var socket = new System.Net.Sockets.Socket(System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
            await socket.ConnectAsync(server.LocalEndPoint).WaitAsync(TimeSpan.FromSeconds(10));
            await socket.SendAllAsync(Encoding.UTF8.GetBytes(script));
            string last = "";
            foreach (var _ in script.Split('\n', StringSplitOptions.RemoveEmptyEntries))
            {
                last = await socket.ReadLineAsync();
            }

            return last;
        }

        var one = await RunAsync("MOVE 1 1\nMOVE 2 2\nSTATE\n");
        var same = await RunAsync("MOVE 1 1\nMOVE 2 2\nSTATE\n");
        var swapped = await RunAsync("MOVE 2 2\nMOVE 1 1\nSTATE\n");
        Assert.Equal(one, same);
        Assert.NotEqual(one, swapped);
        Assert.StartsWith("3 STATE 3 3 0 3 ", swapped, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ALineTooLong_GetsAnErrorAndTheSessionCloses()
    {
        await using var server = new SampleServerHost(new IPEndPoint(IPAddress.Loopback, 0), "s");
        server.Start();
        using var socket = new System.Net.Sockets.Socket(System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
        await socket.ConnectAsync(server.LocalEndPoint).WaitAsync(TimeSpan.FromSeconds(10));
        await socket.SendAllAsync(new byte[SampleServerHost.MaxLineBytes + 10].Select(_ => (byte)'a').ToArray());
        Assert.Equal($"1 ERR line longer than {SampleServerHost.MaxLineBytes} bytes; closing", await socket.ReadLineAsync());
        Assert.Equal(0, await socket.ReceiveUntilClosedAsync(TimeSpan.FromSeconds(10)));
    }
}
