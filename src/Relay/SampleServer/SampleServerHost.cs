using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Relay.SampleServer;

/// <summary>
/// `relay sample-server`: a line-protocol game server with per-session state (see
/// <see cref="SampleSession"/>), used by the default topology, the docs and the tests.
/// </summary>
public sealed class SampleServerHost : IAsyncDisposable
{
    /// <summary>Longest accepted line; a longer one gets an error and the session is closed.</summary>
    public const int MaxLineBytes = 64 * 1024;

    private readonly Socket _listener;
    private readonly string _serverId;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Task> _sessions = [];
    private Task? _acceptLoop;

    public SampleServerHost(IPEndPoint listen, string serverId)
    {
        _serverId = serverId;
        _listener = new Socket(listen.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        _listener.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
        _listener.Bind(listen);
        _listener.Listen(512);
        LocalEndPoint = (IPEndPoint)_listener.LocalEndPoint!;
    }

    public IPEndPoint LocalEndPoint { get; }

    public long SessionsAccepted { get; private set; }

    public void Start() => _acceptLoop = AcceptAsync(_stop.Token);

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        _listener.Dispose();
        if (_acceptLoop is not null)
        {
            await _acceptLoop.ConfigureAwait(false);
        }

        Task[] sessions;
        lock (_sessions)
        {
            sessions = [.. _sessions];
        }

        await Task.WhenAll(sessions).ConfigureAwait(false);
        _stop.Dispose();
    }

    private async Task AcceptAsync(CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                socket = await _listener.AcceptAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                return;
            }

            SessionsAccepted++;
            socket.NoDelay = true;
            var task = ServeAsync(socket, cancellationToken);
            lock (_sessions)
            {
                _sessions.RemoveAll(t => t.IsCompleted);
                _sessions.Add(task);
            }
        }
    }

    private async Task ServeAsync(Socket socket, CancellationToken cancellationToken)
    {
        await Task.Yield();
        var session = new SampleSession(_serverId);
        await using var stream = new NetworkStream(socket, ownsSocket: true);
        var reader = PipeReader.Create(stream);
        var writer = PipeWriter.Create(stream);
        try
        {
            while (!session.Closed)
            {
                var result = await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
                var buffer = result.Buffer;
                while (TryReadLine(ref buffer, out var line))
                {
                    var reply = session.Handle(line);
                    writer.Write(Encoding.UTF8.GetBytes(reply + "\n"));
                    if (session.Closed)
                    {
                        break;
                    }
                }

                if (buffer.Length > MaxLineBytes)
                {
                    writer.Write(Encoding.UTF8.GetBytes($"{session.Count + 1} ERR line longer than {MaxLineBytes} bytes; closing\n"));
                    await writer.FlushAsync(cancellationToken).ConfigureAwait(false);
                    break;
                }

                reader.AdvanceTo(buffer.Start, buffer.End);
                await writer.FlushAsync(cancellationToken).ConfigureAwait(false);
                if (result.IsCompleted)
                {
                    break;
                }
            }
        }
        catch (Exception ex) when (ex is IOException or OperationCanceledException or SocketException)
        {
            // The client went away or the server is stopping: the session simply ends.
        }
        finally
        {
            await reader.CompleteAsync().ConfigureAwait(false);
            await writer.CompleteAsync().ConfigureAwait(false);
        }
    }

    private static bool TryReadLine(ref ReadOnlySequence<byte> buffer, out string line)
    {
        var position = buffer.PositionOf((byte)'\n');
        if (position is null)
        {
            line = "";
            return false;
        }

        var slice = buffer.Slice(0, position.Value);
        line = Encoding.UTF8.GetString(slice).TrimEnd('\r');
        buffer = buffer.Slice(buffer.GetPosition(1, position.Value));
        return true;
    }
}
