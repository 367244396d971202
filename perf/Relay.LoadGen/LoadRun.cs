using System.Diagnostics;
using System.Net.Sockets;

namespace Relay.LoadGen;

/// <summary>
/// The frame shared by rr and stream: connect every session, run warm-up, count over the measured
/// window, stop by itself at the deadline or when the count is reached, and close everything.
/// </summary>
internal abstract class LoadRun
{
    private const int CounterStride = 16; // 128 bytes between sessions' counters: no false sharing

    private readonly long[] _ops;
    private readonly long[] _bytesSent;
    private readonly long[] _bytesReceived;
    private long _errors;
    private string? _firstError;
    private volatile bool _stopping;

    protected LoadRun(LoadGenOptions options)
    {
        Options = options;
        _ops = new long[options.Sessions * CounterStride];
        _bytesSent = new long[options.Sessions * CounterStride];
        _bytesReceived = new long[options.Sessions * CounterStride];
    }

    protected LoadGenOptions Options { get; }

    /// <summary>Set once the measured window is over; loops stop and I/O errors are no longer errors.</summary>
    protected bool Stopping => _stopping;

    /// <summary>Operations that start at or after this timestamp are recorded in the histogram.</summary>
    protected long MeasureFrom { get; private set; } = long.MaxValue;

    protected void AddOps(int session, long n) => Add(_ops, session, n);

    protected void AddSent(int session, long n) => Add(_bytesSent, session, n);

    protected void AddReceived(int session, long n) => Add(_bytesReceived, session, n);

    protected void RecordError(Exception ex)
    {
        if (_stopping)
        {
            return;
        }

        Interlocked.Increment(ref _errors);
        Interlocked.CompareExchange(ref _firstError, SocketIo.Describe(ex), null);
    }

    protected void RecordError(string message)
    {
        Interlocked.Increment(ref _errors);
        Interlocked.CompareExchange(ref _firstError, message, null);
    }

    protected abstract RunResult CreateResult();

    protected abstract Task RunSessionAsync(int session, Socket socket);

    /// <summary>Called after the run, before the result is printed (e.g. to merge histograms).</summary>
    protected virtual void Complete(RunResult result)
    {
    }

    public async Task<RunResult> RunAsync()
    {
        var o = Options;
        var target = o.Target!;
        var result = CreateResult();

        Console.Error.WriteLine($"{result.Mode}: connecting {o.Sessions} sessions to {target}");
        var (sockets, connectFailures, connectError) = await ConnectAllAsync(o).ConfigureAwait(false);
        result.ConnectFailures = connectFailures;
        if (sockets.Count == 0)
        {
            result.Note = $"no session could connect: {connectError}";
            return result;
        }

        var start = Stopwatch.GetTimestamp();
        var warmupTicks = (long)(o.WarmupSeconds * Stopwatch.Frequency);
        MeasureFrom = start + warmupTicks;
        var tasks = new Task[sockets.Count];
        for (var i = 0; i < sockets.Count; i++)
        {
            var session = i;
            var socket = sockets[i];
            tasks[i] = Task.Run(() => RunSessionAsync(session, socket));
        }

        var all = Task.WhenAll(tasks);
        if (warmupTicks > 0)
        {
            Console.Error.WriteLine($"{result.Mode}: warming up for {o.WarmupSeconds:0.###} s");
            await Task.WhenAny(all, Task.Delay(TimeSpan.FromSeconds(o.WarmupSeconds))).ConfigureAwait(false);
        }

        var allocated0 = GC.GetTotalAllocatedBytes(precise: true);
        var t0 = Stopwatch.GetTimestamp();
        var (ops0, sent0, recv0) = (Sum(_ops), Sum(_bytesSent), Sum(_bytesReceived));
        Console.Error.WriteLine($"{result.Mode}: measuring for up to {o.DurationSeconds:0.###} s");
        await Task.WhenAny(all, Task.Delay(TimeSpan.FromSeconds(o.DurationSeconds))).ConfigureAwait(false);
        var t1 = Stopwatch.GetTimestamp();
        var (ops1, sent1, recv1) = (Sum(_ops), Sum(_bytesSent), Sum(_bytesReceived));
        result.AllocatedBytes = GC.GetTotalAllocatedBytes(precise: true) - allocated0;
        _stopping = true;

        // Closing the sockets ends every pending read or write; the sessions see _stopping and exit quietly.
        foreach (var socket in sockets)
        {
            SocketIo.Abort(socket);
        }

        if (await Task.WhenAny(all, Task.Delay(TimeSpan.FromSeconds(5))).ConfigureAwait(false) != all)
        {
            RecordError("some sessions did not stop within 5 s of the deadline");
        }

        result.ElapsedSeconds = (t1 - t0) / (double)Stopwatch.Frequency;
        result.Ops = ops1 - ops0;
        result.BytesSent = sent1 - sent0;
        result.BytesReceived = recv1 - recv0;
        result.Errors = Interlocked.Read(ref _errors);
        if (_firstError is not null)
        {
            result.Note = $"first error: {_firstError}";
        }
        else if (connectError is not null)
        {
            result.Note = $"first connect error: {connectError}";
        }

        Complete(result);
        return result;
    }

    internal static async Task<(List<Socket> Sockets, int Failures, string? FirstError)> ConnectAllAsync(LoadGenOptions o)
    {
        var sockets = new Socket?[o.Sessions];
        var failures = 0;
        string? firstError = null;
        using var gate = new SemaphoreSlim(o.ConnectConcurrency);
        var tasks = new Task[o.Sessions];
        for (var i = 0; i < o.Sessions; i++)
        {
            var index = i;
            tasks[i] = Task.Run(async () =>
            {
                await gate.WaitAsync().ConfigureAwait(false);
                try
                {
                    sockets[index] = await SocketIo.ConnectAsync(o.Target!, o.ConnectTimeoutSeconds, CancellationToken.None).ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is SocketException or TimeoutException)
                {
                    Interlocked.Increment(ref failures);
                    Interlocked.CompareExchange(ref firstError, SocketIo.Describe(ex), null);
                }
                finally
                {
                    gate.Release();
                }
            });
        }

        await Task.WhenAll(tasks).ConfigureAwait(false);
        var connected = new List<Socket>(o.Sessions);
        foreach (var s in sockets)
        {
            if (s is not null)
            {
                connected.Add(s);
            }
        }

        return (connected, failures, firstError);
    }

    private static void Add(long[] counters, int session, long n)
    {
        // One writer per slot (its session); readers use Volatile.Read.
        ref var slot = ref counters[session * CounterStride];
        Volatile.Write(ref slot, slot + n);
    }

    private static long Sum(long[] counters)
    {
        long total = 0;
        for (var i = 0; i < counters.Length; i += CounterStride)
        {
            total += Volatile.Read(ref counters[i]);
        }

        return total;
    }
}
