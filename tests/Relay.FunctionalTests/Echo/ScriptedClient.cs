using System.Net.Sockets;
using System.Text;

namespace Relay.FunctionalTests.Echo;

/// <summary>
/// A game-like client of the sample server: bursts of line commands whose answers depend on the
/// session's history (positions, scores, STATE's digest of every earlier message). It records
/// every byte it receives, so a run through a splice can be compared with a run without one.
/// </summary>
public sealed class ScriptedClient
{
    private readonly List<string> _bursts;
    private readonly List<byte> _received = [];

    public ScriptedClient(int seed, int bursts)
    {
        var random = new Random(seed);
        _bursts = ["HELLO\nSTATE\n"];
        for (var i = 1; i < bursts; i++)
        {
            var burst = new StringBuilder();
            var commands = random.Next(1, 4);
            for (var c = 0; c < commands; c++)
            {
                burst.Append(random.Next(5) switch
                {
                    0 => $"MOVE {random.Next(-50, 50)} {random.Next(-50, 50)}\n",
                    1 => $"SCORE {random.Next(1, 1000)}\n",
                    2 => $"ECHO seed {seed} burst {i} {new string('x', random.Next(0, 200))}\n",
                    3 => "STATE\n",
                    _ => $"MOVE {random.Next(-5, 5)} 1\n",
                });
            }

            _bursts.Add(burst.ToString());
        }
    }

    public int Bursts => _bursts.Count;

    public int Completed { get; private set; }

    public byte[] Received => [.. _received];

    /// <summary>Runs bursts [from, to): sends each whole, then reads one line per command.</summary>
    public async Task RunAsync(Socket socket, int from, int to, TimeSpan pause = default)
    {
        var buffer = new byte[64 * 1024];
        for (var i = from; i < to; i++)
        {
            var burst = _bursts[i];
            await socket.SendAsync(Encoding.ASCII.GetBytes(burst), SocketFlags.None).WaitAsync(TimeSpan.FromSeconds(30));
            var expectedLines = burst.Count(c => c == '\n');
            var lines = 0;
            while (lines < expectedLines)
            {
                var read = await socket.ReceiveAsync(buffer, SocketFlags.None).WaitAsync(TimeSpan.FromSeconds(30));
                if (read == 0)
                {
                    throw new IOException($"the relay closed the session after burst {i} of {_bursts.Count} ({lines} of {expectedLines} answers read)");
                }

                _received.AddRange(buffer.AsSpan(0, read));
                lines += buffer.AsSpan(0, read).Count((byte)'\n');
            }

            Completed = i + 1;
            if (pause > TimeSpan.Zero)
            {
                await Task.Delay(pause);
            }
        }
    }

    /// <summary>What a run of every burst answers without any failure: the same script, straight to a backend.</summary>
    public async Task<byte[]> ReferenceAsync(System.Net.IPEndPoint backend)
    {
        var reference = new ScriptedClient(0, 1) { };
        reference._bursts.Clear();
        reference._bursts.AddRange(_bursts);
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(backend).WaitAsync(TimeSpan.FromSeconds(10));
        await reference.RunAsync(socket, 0, _bursts.Count);
        return reference.Received;
    }
}
