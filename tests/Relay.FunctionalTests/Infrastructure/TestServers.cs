using System.Net;
using System.Net.Sockets;

namespace Relay.FunctionalTests.Infrastructure;

/// <summary>
/// A real TCP upstream on 127.0.0.1:0 whose behaviour per connection is a delegate: echo, reset,
/// read a header first, and so on.
/// </summary>
public sealed class TestUpstream : IAsyncDisposable
{
    private readonly Socket _listener;
    private readonly Func<Socket, CancellationToken, Task> _serve;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Task> _connections = [];
    private readonly Task _accept;
    private int _accepted;

    public TestUpstream(Func<Socket, CancellationToken, Task> serve)
    {
        _serve = serve;
        _listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _listener.Listen(512);
        EndPoint = (IPEndPoint)_listener.LocalEndPoint!;
        _accept = AcceptAsync();
    }

    public IPEndPoint EndPoint { get; }

    public string Address => $"127.0.0.1:{EndPoint.Port}";

    public int Accepted => Volatile.Read(ref _accepted);

    public static TestUpstream Echo() => new(EchoAsync);

    public static async Task EchoAsync(Socket socket, CancellationToken cancellationToken)
    {
        var buffer = new byte[64 * 1024];
        while (true)
        {
            var read = await socket.ReceiveAsync(buffer, SocketFlags.None, cancellationToken);
            if (read == 0)
            {
                return;
            }

            await socket.SendAsync(buffer.AsMemory(0, read), SocketFlags.None, cancellationToken);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Dispose();
        await _accept;
        Task[] connections;
        lock (_connections)
        {
            connections = [.. _connections];
        }

        await Task.WhenAll(connections).WaitAsync(TimeSpan.FromSeconds(10));
        _stop.Dispose();
    }

    private async Task AcceptAsync()
    {
        while (true)
        {
            Socket socket;
            try
            {
                socket = await _listener.AcceptAsync(_stop.Token);
            }
            catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                return;
            }

            Interlocked.Increment(ref _accepted);
            var task = Task.Run(async () =>
            {
                using (socket)
                {
                    try
                    {
                        await _serve(socket, _stop.Token);
                    }
                    catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException or IOException)
                    {
                        // The test or the relay closed the connection: that is the end of it.
                    }
                }
            });
            lock (_connections)
            {
                _connections.Add(task);
            }
        }
    }
}

/// <summary>A listener whose accept queue is full and never drained: connects to it hang.</summary>
public sealed class HangingUpstream : IDisposable
{
    private readonly Socket _listener;
    private readonly List<Socket> _fillers = [];

    private HangingUpstream()
    {
        _listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _listener.Listen(0);
        EndPoint = (IPEndPoint)_listener.LocalEndPoint!;

        // Fill the accept queue (backlog 0 still admits one or two); later SYNs are dropped, so
        // connects hang until their timeout, as against a host that has gone silent.
        for (var i = 0; i < 8; i++)
        {
            var filler = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { Blocking = false };
            try
            {
                filler.Connect(EndPoint);
            }
            catch (SocketException)
            {
                // Non-blocking connect reports "in progress"; the SYN is what matters.
            }

            _fillers.Add(filler);
        }
    }

    public static async Task<HangingUpstream> CreateAsync()
    {
        var upstream = new HangingUpstream();

        // Let the fillers' handshakes land in the queue before anyone relies on it being full.
        await Task.Delay(200);
        return upstream;
    }

    public IPEndPoint EndPoint { get; }

    public string Address => $"127.0.0.1:{EndPoint.Port}";

    public void Dispose()
    {
        foreach (var filler in _fillers)
        {
            filler.Dispose();
        }

        _listener.Dispose();
    }
}

public static class Ports
{
    /// <summary>A loopback port that nothing listens on (bound, read, released).</summary>
    public static int Unused()
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)socket.LocalEndPoint!).Port;
    }
}
