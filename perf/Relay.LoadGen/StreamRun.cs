using System.Buffers;
using System.Diagnostics;
using System.Net.Sockets;

namespace Relay.LoadGen;

/// <summary>
/// stream: each session moves SIZE-byte writes/reads as fast as it can. 'both' sends and reads the
/// echo on two loops per session and reports what came back; 'up' only sends; 'down' only reads.
/// </summary>
internal sealed class StreamRun : LoadRun
{
    public StreamRun(LoadGenOptions options)
        : base(options)
    {
    }

    /// <summary>With --count, each session moves a fixed share, so 'both' knows when its echo is complete.</summary>
    private long Quota(int session)
    {
        var count = Options.Count;
        var sessions = Options.Sessions;
        return count <= 0 ? long.MaxValue : (count / sessions) + (session < count % sessions ? 1 : 0);
    }

    protected override RunResult CreateResult() => new()
    {
        Mode = "stream",
        Target = Options.Target!.ToString(),
        Sessions = Options.Sessions,
        Size = Options.Size,
    };

    protected override void Complete(RunResult result)
    {
        result.PayloadBytes = Options.Direction == StreamDirection.Up ? result.BytesSent : result.BytesReceived;
        result.Note ??= $"direction {Options.Direction.ToString().ToLowerInvariant()}";
    }

    protected override Task RunSessionAsync(int session, Socket socket) => Options.Direction switch
    {
        StreamDirection.Up => SendLoopAsync(session, socket, countOps: true),
        StreamDirection.Down => ReceiveLoopAsync(session, socket),
        _ => Task.WhenAll(SendLoopAsync(session, socket, countOps: false), ReceiveLoopAsync(session, socket)),
    };

    private async Task SendLoopAsync(int session, Socket socket, bool countOps)
    {
        var size = Options.Size;
        var left = Quota(session);
        var buffer = ArrayPool<byte>.Shared.Rent(size);
        try
        {
            buffer.AsSpan(0, size).Fill((byte)'x');

            var memory = buffer.AsMemory(0, size);
            var rate = Options.RateBytesPerSecond;
            var started = Stopwatch.GetTimestamp();
            long sent = 0;
            while (!Stopping && left > 0)
            {
                var chunk = left >= size ? memory : memory[..(int)left];
                if (rate > 0)
                {
                    // Paced: this chunk may leave once the session's average rate allows it.
                    var due = TimeSpan.FromSeconds((double)sent / rate) - Stopwatch.GetElapsedTime(started);
                    if (due > TimeSpan.Zero)
                    {
                        await Task.Delay(due).ConfigureAwait(false);
                    }
                }

                if (Options.RandomPayload)
                {
                    // Fresh bytes every write: a repeated buffer would compress across writes.
                    Random.Shared.NextBytes(chunk.Span);
                }

                await SocketIo.SendAllAsync(socket, chunk).ConfigureAwait(false);
                sent += chunk.Length;
                left -= chunk.Length;
                AddSent(session, chunk.Length);
                if (countOps)
                {
                    AddOps(session, 1);
                }
            }

            if (Options.Direction == StreamDirection.Up && !Stopping)
            {
                socket.Shutdown(SocketShutdown.Send);
            }
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            RecordError(ex);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private async Task ReceiveLoopAsync(int session, Socket socket)
    {
        var size = Options.Size;
        var left = Quota(session);
        var buffer = ArrayPool<byte>.Shared.Rent(size);
        try
        {
            var memory = buffer.AsMemory(0, size);
            while (!Stopping && left > 0)
            {
                var n = await socket.ReceiveAsync(left >= size ? memory : memory[..(int)left], SocketFlags.None).ConfigureAwait(false);
                if (n == 0)
                {
                    if (!Stopping)
                    {
                        RecordError($"session {session}: peer closed the connection");
                    }

                    break;
                }

                left -= n;
                AddReceived(session, n);
                AddOps(session, 1);
            }
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            RecordError(ex);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }
}
