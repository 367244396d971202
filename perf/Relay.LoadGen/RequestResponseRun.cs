using System.Buffers;
using System.Diagnostics;
using System.Net.Sockets;
using HdrHistogram;

namespace Relay.LoadGen;

/// <summary>
/// rr: each session sends SIZE x DEPTH bytes, waits for exactly as many back (an echo answers), and
/// records the round trip once per request, as redis-benchmark does for a pipeline.
/// </summary>
internal sealed class RequestResponseRun : LoadRun
{
    /// <summary>Latencies are recorded in nanoseconds, up to 60 s, with 3 significant digits.</summary>
    private const long HighestTrackableNanos = 60L * 1_000_000_000;

    private static readonly double _nanosPerTick = 1e9 / Stopwatch.Frequency;

    private readonly LongHistogram[] _histograms;
    private long _remaining;

    public RequestResponseRun(LoadGenOptions options)
        : base(options)
    {
        // One histogram per session up to 64 sessions; beyond that sessions share a lock-striped set.
        _histograms = new LongHistogram[Math.Min(options.Sessions, 64)];
        for (var i = 0; i < _histograms.Length; i++)
        {
            _histograms[i] = new LongHistogram(HighestTrackableNanos, 3);
        }

        _remaining = options.Count;
    }

    protected override RunResult CreateResult() => new()
    {
        Mode = "rr",
        Target = Options.Target!.ToString(),
        Sessions = Options.Sessions,
        Size = Options.Size,
        Depth = Options.Depth,
    };

    protected override void Complete(RunResult result)
    {
        var merged = new LongHistogram(HighestTrackableNanos, 3);
        foreach (var h in _histograms)
        {
            lock (h)
            {
                merged.Add(h);
            }
        }

        result.Latency = merged;
        result.PayloadBytes = result.BytesReceived;
    }

    protected override async Task RunSessionAsync(int session, Socket socket)
    {
        var o = Options;
        var bytes = o.Size * o.Depth;
        var limited = o.Count > 0;
        var histogram = _histograms[session % _histograms.Length];
        var send = ArrayPool<byte>.Shared.Rent(bytes);
        var receive = ArrayPool<byte>.Shared.Rent(bytes);
        try
        {
            for (var i = 0; i < bytes; i++)
            {
                send[i] = (byte)(session + i);
            }

            var sendMemory = send.AsMemory(0, bytes);
            var receiveMemory = receive.AsMemory(0, bytes);
            while (!Stopping)
            {
                if (limited && Interlocked.Add(ref _remaining, -o.Depth) < 0)
                {
                    break;
                }

                var t0 = Stopwatch.GetTimestamp();
                await SocketIo.SendAllAsync(socket, sendMemory).ConfigureAwait(false);
                await SocketIo.ReceiveExactAsync(socket, receiveMemory).ConfigureAwait(false);
                var t1 = Stopwatch.GetTimestamp();
                if (o.Verify && !receive.AsSpan(0, bytes).SequenceEqual(send.AsSpan(0, bytes)))
                {
                    var at = receive.AsSpan(0, bytes).CommonPrefixLength(send.AsSpan(0, bytes));
                    RecordError($"session {session}: response differs from the request at byte {at} of {bytes} (got 0x{receive[at]:x2}, sent 0x{send[at]:x2}; not an echo?)");
                    return;
                }

                AddOps(session, o.Depth);
                AddSent(session, bytes);
                AddReceived(session, bytes);
                if (t0 >= MeasureFrom && !Stopping)
                {
                    var nanos = Math.Min((long)((t1 - t0) * _nanosPerTick), HighestTrackableNanos);
                    lock (histogram)
                    {
                        histogram.RecordValueWithCount(nanos, o.Depth);
                    }
                }
            }
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException or EndOfStreamException)
        {
            RecordError(ex);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(send);
            ArrayPool<byte>.Shared.Return(receive);
        }
    }
}
