using System.Buffers;
using System.Diagnostics;
using System.Net.Sockets;

namespace Relay.LoadGen;

/// <summary>
/// idle: opens N connections, optionally sends one message on each and reads its echo, announces
/// "ready: OPEN of N connections open" on stdout, holds them for the duration and reports how many
/// are still open. Each held connection has one pending read into a shared scratch buffer (the
/// content is never looked at), so N connections cost N sockets and no per-connection buffers.
/// </summary>
internal sealed class IdleRun
{
    private static readonly byte[] _scratch = new byte[256];

    private readonly LoadGenOptions _options;
    private long _open;
    private long _closedByPeer;
    private long _errors;
    private string? _firstError;
    private volatile bool _stopping;

    public IdleRun(LoadGenOptions options) => _options = options;

    public async Task<RunResult> RunAsync()
    {
        var o = _options;
        var result = new RunResult
        {
            Mode = "idle",
            Target = o.Target!.ToString(),
            Sessions = o.Sessions,
            Size = o.Size,
        };

        Console.Error.WriteLine($"idle: opening {o.Sessions} connections to {o.Target} ({o.ConnectConcurrency} at a time)");
        var opening = Stopwatch.StartNew();
        var (sockets, failures, connectError) = await LoadRun.ConnectAllAsync(o).ConfigureAwait(false);
        result.ConnectFailures = failures;
        result.Opened = sockets.Count;

        if (o.Size > 0)
        {
            await GreetAllAsync(sockets).ConfigureAwait(false);
        }

        var watchers = new Task[sockets.Count];
        Interlocked.Add(ref _open, sockets.Count);
        for (var i = 0; i < sockets.Count; i++)
        {
            watchers[i] = WatchAsync(sockets[i]);
        }

        Console.Error.WriteLine($"idle: opened {sockets.Count} in {opening.Elapsed.TotalSeconds:F1} s ({failures} failed)");
        Console.Out.WriteLine($"ready: {Interlocked.Read(ref _open)} of {o.Sessions} connections open");
        Console.Out.Flush();

        var held = Stopwatch.StartNew();
        await Task.Delay(TimeSpan.FromSeconds(o.DurationSeconds)).ConfigureAwait(false);
        result.ElapsedSeconds = held.Elapsed.TotalSeconds;
        result.OpenAtEnd = Interlocked.Read(ref _open);
        result.ClosedByPeer = Interlocked.Read(ref _closedByPeer);
        _stopping = true;
        foreach (var socket in sockets)
        {
            SocketIo.Abort(socket);
        }

        await Task.WhenAny(Task.WhenAll(watchers), Task.Delay(TimeSpan.FromSeconds(5))).ConfigureAwait(false);
        result.Errors = Interlocked.Read(ref _errors) + result.ClosedByPeer.Value;
        result.Note = _firstError is not null ? $"first error: {_firstError}"
            : connectError is not null ? $"first connect error: {connectError}"
            : null;
        return result;
    }

    private async Task GreetAllAsync(List<Socket> sockets)
    {
        var o = _options;
        using var gate = new SemaphoreSlim(o.ConnectConcurrency);
        var tasks = new Task[sockets.Count];
        for (var i = 0; i < sockets.Count; i++)
        {
            var socket = sockets[i];
            tasks[i] = Task.Run(async () =>
            {
                await gate.WaitAsync().ConfigureAwait(false);
                var buffer = ArrayPool<byte>.Shared.Rent(o.Size * 2);
                try
                {
                    buffer.AsSpan(0, o.Size).Fill((byte)'i');
                    await SocketIo.SendAllAsync(socket, buffer.AsMemory(0, o.Size)).ConfigureAwait(false);
                    if (o.Verify)
                    {
                        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(o.ConnectTimeoutSeconds));
                        await using (timeout.Token.UnsafeRegister(static s => ((Socket)s!).Dispose(), socket).ConfigureAwait(false))
                        {
                            await SocketIo.ReceiveExactAsync(socket, buffer.AsMemory(o.Size, o.Size)).ConfigureAwait(false);
                        }

                        if (!buffer.AsSpan(o.Size, o.Size).SequenceEqual(buffer.AsSpan(0, o.Size)))
                        {
                            Fail("the reply to the idle message is not its echo");
                        }
                    }
                }
                catch (Exception ex) when (ex is SocketException or ObjectDisposedException or EndOfStreamException)
                {
                    Fail(ex is ObjectDisposedException ? $"no echo within {o.ConnectTimeoutSeconds:0.###} s" : SocketIo.Describe(ex));
                }
                finally
                {
                    ArrayPool<byte>.Shared.Return(buffer);
                    gate.Release();
                }
            });
        }

        await Task.WhenAll(tasks).ConfigureAwait(false);
    }

    private async Task WatchAsync(Socket socket)
    {
        try
        {
            while (true)
            {
                // Concurrent reads share one scratch buffer: what lands there is never read.
                var n = await socket.ReceiveAsync(_scratch.AsMemory(), SocketFlags.None).ConfigureAwait(false);
                if (n == 0)
                {
                    break;
                }
            }
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            // A reset or a socket disposed by a failed greeting: counted below as a closed connection.
        }

        if (!_stopping)
        {
            Interlocked.Decrement(ref _open);
            Interlocked.Increment(ref _closedByPeer);
        }
    }

    private void Fail(string message)
    {
        Interlocked.Increment(ref _errors);
        Interlocked.CompareExchange(ref _firstError, message, null);
    }
}
