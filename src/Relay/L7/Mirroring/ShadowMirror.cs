using System.Collections.Concurrent;
using Prometheus;
using Relay.Clusters;
using Relay.Configuration;

namespace Relay.L7.Mirroring;

/// <summary>
/// One shadow of one route: a bounded queue of copies, at most <see cref="MirrorConfig.Concurrency"/>
/// of them in flight, each sent, its response compared with the primary's, and the shadow's
/// consistency state kept. The primary never waits here: <see cref="TryEnqueue"/> either starts,
/// queues or drops (and counts) at once. A copy with a free slot is started on the calling thread
/// (after the primary's response is complete) and a finishing copy starts the next queued one on
/// its own thread, so copies need no worker threads and no thread-pool hand-offs (on a busy core
/// each hand-off was a context switch per copy).
/// </summary>
internal sealed class ShadowMirror : IAsyncDisposable
{
    // Hop-by-hop headers (RFC 9110 7.6.1) and Host are not copied; HttpClient sets its own.
    private static readonly HashSet<string> s_skipHeaders = new(StringComparer.OrdinalIgnoreCase)
    {
        "Host", "Connection", "Keep-Alive", "Proxy-Connection", "TE", "Trailer", "Transfer-Encoding", "Upgrade", "Content-Length",
    };

    private static readonly string[] s_compareResults = ["match", "status", "headers", "body", "error"];

    private readonly string _route;
    private readonly MirrorConfig _config;
    private readonly RelayRuntime _runtime;
    private readonly Func<EndpointState, HttpMessageInvoker> _invokers;
    private readonly TimeSpan _timeout;
    private readonly ILogger _logger;
    private readonly ConcurrentQueue<MirrorItem> _waiting = new();
    private readonly ConcurrentQueue<CancellationTokenSource> _timeouts = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly ConsistencyWindow _window;
    private readonly object _windowLock = new();
    private readonly Counter.Child _queued;
    private readonly Counter.Child _dropped;
    private readonly Counter.Child _sent;
    private readonly Counter.Child _errors;
    private readonly Counter.Child[] _compare;
    private int _waitingCount;
    private int _inFlight;
    private volatile bool _disposed;
    private long _queuedCount;
    private long _droppedCount;
    private long _sentCount;
    private long _errorCount;
    private long _matchCount;
    private long _mismatchCount;
    private EndpointCache? _endpoint;
    private UriCache? _lastUri;

    public ShadowMirror(string route, string shadowId, MirrorConfig config, TimeSpan timeout, RelayRuntime runtime, Func<EndpointState, HttpMessageInvoker> invokers, ILogger logger)
    {
        _route = route;
        ShadowId = shadowId;
        _config = config;
        _timeout = timeout;
        _runtime = runtime;
        _invokers = invokers;
        _logger = logger;
        _window = new ConsistencyWindow(config.Compare);
        var metrics = runtime.Metrics;
        _queued = metrics.HttpMirror.WithLabels(route, shadowId, "queued");
        _dropped = metrics.HttpMirror.WithLabels(route, shadowId, "dropped");
        _sent = metrics.HttpMirror.WithLabels(route, shadowId, "sent");
        _errors = metrics.HttpMirror.WithLabels(route, shadowId, "error");
        _compare = [.. s_compareResults.Select(r => metrics.HttpMirrorCompare.WithLabels(route, shadowId, r))];
        metrics.HttpShadowConsistent.WithLabels(route, shadowId).Set(-1);
    }

    public string ShadowId { get; }

    public ShadowConsistency Consistency
    {
        get
        {
            lock (_windowLock)
            {
                return _window.State;
            }
        }
    }

    public int QueueDepth => Math.Max(0, Volatile.Read(ref _waitingCount));

    public ShadowStats Stats()
    {
        lock (_windowLock)
        {
            return new ShadowStats(
                ShadowId,
                _window.State,
                Interlocked.Read(ref _queuedCount),
                Interlocked.Read(ref _droppedCount),
                Interlocked.Read(ref _sentCount),
                Interlocked.Read(ref _errorCount),
                Interlocked.Read(ref _matchCount),
                Interlocked.Read(ref _mismatchCount),
                _window.Samples,
                _window.Mismatches,
                QueueDepth);
        }
    }

    /// <summary>The current endpoint for the shadow id, or null when the config no longer has it.</summary>
    public EndpointState? Endpoint() => Current().Endpoint;

    /// <summary>
    /// The shadow's endpoint and its cluster's client. The lookup walks every cluster; it is kept for
    /// as long as the runtime snapshot stays (a reload, connect timeouts included, makes a new one).
    /// </summary>
    private EndpointCache Current()
    {
        var snapshot = _runtime.Snapshot;
        if (Volatile.Read(ref _endpoint) is { } cached && ReferenceEquals(cached.Snapshot, snapshot))
        {
            return cached;
        }

        var endpoint = _runtime.FindEndpoint(ShadowId);
        var current = new EndpointCache(snapshot, endpoint, null);
        Volatile.Write(ref _endpoint, current);
        return current;
    }

    private HttpMessageInvoker Invoker(EndpointCache current)
    {
        if (current.Invoker is { } invoker)
        {
            return invoker;
        }

        invoker = _invokers(current.Endpoint!);
        Volatile.Write(ref _endpoint, current with { Invoker = invoker });
        return invoker;
    }

    /// <summary>Starts or queues a copy without waiting; a full queue drops it. Takes a reference on success.</summary>
    public bool TryEnqueue(MirrorItem item)
    {
        var admission = TryAdmit(item);
        if (admission == MirrorAdmission.Slot)
        {
            Start(item);
        }

        return admission != MirrorAdmission.Dropped;
    }

    /// <summary>
    /// Takes a copy without waiting, counted as queued, or drops (and counts) it when the queue is
    /// full. <see cref="MirrorAdmission.Slot"/>: the copy holds a free slot and the caller must
    /// <see cref="Start"/> it (once the primary's response is out). Takes a reference unless dropped.
    /// </summary>
    public MirrorAdmission TryAdmit(MirrorItem item)
    {
        if (!_disposed)
        {
            if (TryTakeSlot())
            {
                item.AddReference();
                Counted(ref _queuedCount, _queued);
                return MirrorAdmission.Slot;
            }

            if (Interlocked.Increment(ref _waitingCount) <= _config.QueueLength)
            {
                item.AddReference();
                _waiting.Enqueue(item);
                Counted(ref _queuedCount, _queued);

                // A copy may have finished between the slot check and the enqueue.
                Pump();
                return MirrorAdmission.Queued;
            }

            Interlocked.Decrement(ref _waitingCount);
        }

        Counted(ref _droppedCount, _dropped);
        return MirrorAdmission.Dropped;
    }

    /// <summary>Sends a copy admitted into a slot; it runs on the caller's thread up to its first wait (the request written).</summary>
    public void Start(MirrorItem item) => _ = RunAsync(item);

    public async ValueTask DisposeAsync()
    {
        _disposed = true;
        await _stop.CancelAsync().ConfigureAwait(false);

        // In-flight copies end promptly once cancelled; queued ones are released unsent.
        var deadline = Environment.TickCount64 + 5000;
        while (Volatile.Read(ref _inFlight) > 0 && Environment.TickCount64 < deadline)
        {
            await Task.Delay(5).ConfigureAwait(false);
        }

        while (_waiting.TryDequeue(out var left))
        {
            Interlocked.Decrement(ref _waitingCount);
            left.Release();
        }

        while (_timeouts.TryDequeue(out var cts))
        {
            cts.Dispose();
        }

        _runtime.Metrics.HttpShadowConsistent.RemoveLabelled(_route, ShadowId);
    }

    private static void Counted(ref long count, Counter.Child counter)
    {
        Interlocked.Increment(ref count);
        counter.Inc(Exemplar.None);
    }

    private bool TryTakeSlot()
    {
        var limit = Math.Max(1, _config.Concurrency);
        while (true)
        {
            var current = Volatile.Read(ref _inFlight);
            if (current >= limit)
            {
                return false;
            }

            if (Interlocked.CompareExchange(ref _inFlight, current + 1, current) == current)
            {
                return true;
            }
        }
    }

    /// <summary>Starts queued copies while slots are free.</summary>
    private void Pump()
    {
        while (!_disposed && !_waiting.IsEmpty && TryTakeSlot())
        {
            if (!_waiting.TryDequeue(out var next))
            {
                Interlocked.Decrement(ref _inFlight);
                continue;
            }

            Interlocked.Decrement(ref _waitingCount);
            _ = RunAsync(next);
        }
    }

    /// <summary>Sends copies on one slot: this one, then queued ones, until the queue is empty.</summary>
    private async Task RunAsync(MirrorItem item)
    {
        while (true)
        {
            try
            {
                await SendAndCompareAsync(item, _stop.Token).ConfigureAwait(false);
            }
            catch (Exception ex) when (!_stop.IsCancellationRequested)
            {
                // Anything unexpected (an invalid header for HttpClient, say) is this copy's error, not the relay's.
                Counted(ref _errorCount, _errors);
                L7Log.ShadowError(_logger, _route, ShadowId, ex.Message);
                Record(item, null, ex.Message);
            }
            catch (Exception)
            {
                // Stopping: the copy is abandoned.
            }
            finally
            {
                item.Release();
            }

            if (_disposed || !_waiting.TryDequeue(out var next))
            {
                break;
            }

            Interlocked.Decrement(ref _waitingCount);
            item = next;
        }

        Interlocked.Decrement(ref _inFlight);

        // A copy may have been queued between the empty check and the slot's release.
        Pump();
    }

    private Uri TargetUri(EndpointState endpoint, string pathAndQuery)
    {
        // Most traffic repeats paths; parsing a Uri per copy costs more than remembering the last one.
        if (Volatile.Read(ref _lastUri) is { } last && ReferenceEquals(last.Endpoint, endpoint) && string.Equals(last.PathAndQuery, pathAndQuery, StringComparison.Ordinal))
        {
            return last.Uri;
        }

        var address = endpoint.Config.Address;
        var uri = new Uri($"http://{FormatHost(address.Host)}:{address.Port}{pathAndQuery}");
        Volatile.Write(ref _lastUri, new UriCache(endpoint, pathAndQuery, uri));
        return uri;
    }

    private CancellationTokenSource RentTimeout(CancellationToken stop)
    {
        if (!_timeouts.TryDequeue(out var cts))
        {
            cts = CancellationTokenSource.CreateLinkedTokenSource(stop);
        }

        cts.CancelAfter(_timeout);
        return cts;
    }

    private void ReturnTimeout(CancellationTokenSource cts)
    {
        if (!_disposed && _timeouts.Count < Math.Max(1, _config.Concurrency) && cts.TryReset())
        {
            _timeouts.Enqueue(cts);
        }
        else
        {
            cts.Dispose();
        }
    }

    private async Task SendAndCompareAsync(MirrorItem item, CancellationToken cancellationToken)
    {
        var current = Current();
        var endpoint = current.Endpoint;
        if (endpoint is null)
        {
            Record(item, null, "shadow endpoint is not configured");
            return;
        }

        using var request = new HttpRequestMessage(HttpMethod.Parse(item.Method), TargetUri(endpoint, item.PathAndQuery));
        if (item.HasBody)
        {
            request.Content = new ReadOnlyMemoryContent(item.Body);
        }

        foreach (var (name, values) in item.Headers)
        {
            if (s_skipHeaders.Contains(name))
            {
                continue;
            }

            var added = values.Count == 1 ? request.Headers.TryAddWithoutValidation(name, values[0]) : request.Headers.TryAddWithoutValidation(name, (IEnumerable<string?>)values);
            if (!added && request.Content is not null)
            {
                _ = values.Count == 1 ? request.Content.Headers.TryAddWithoutValidation(name, values[0]) : request.Content.Headers.TryAddWithoutValidation(name, (IEnumerable<string?>)values);
            }
        }

        request.Headers.TryAddWithoutValidation(_config.Header, _route);
        var timeout = RentTimeout(cancellationToken);
        ResponseDigest shadow;
        try
        {
            using var response = await Invoker(current).SendAsync(request, timeout.Token).ConfigureAwait(false);
            Counted(ref _sentCount, _sent);
            var contentType = response.Content.Headers.ContentType?.MediaType;
            var body = await DigestBodyAsync(response, contentType, timeout.Token).ConfigureAwait(false);
            if (!_config.Compare.Enabled)
            {
                return;
            }

            shadow = new ResponseDigest((int)response.StatusCode, ResponseDigest.DigestHeaders(response, _config.Compare.IgnoreHeaders), body);
        }
        catch (Exception ex) when (ex is HttpRequestException or OperationCanceledException or IOException)
        {
            if (cancellationToken.IsCancellationRequested)
            {
                return;
            }

            Counted(ref _errorCount, _errors);
            L7Log.ShadowError(_logger, _route, ShadowId, ex.Message);
            Record(item, null, ex.Message);
            return;
        }
        finally
        {
            ReturnTimeout(timeout);
        }

        Record(item, shadow, null);
    }

    /// <summary>
    /// Reads the shadow's body to the end and digests it as <see cref="BodyCapture"/> does the
    /// primary's. A body that fits one pooled buffer is hashed where it lies, without a capture.
    /// </summary>
    private async ValueTask<ulong> DigestBodyAsync(HttpResponseMessage response, string? contentType, CancellationToken cancellationToken)
    {
        var stream = await response.Content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false);
        await using (stream.ConfigureAwait(false))
        {
            var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(16 * 1024);
            try
            {
                var length = 0;
                while (length < buffer.Length)
                {
                    var read = await stream.ReadAsync(buffer.AsMemory(length), cancellationToken).ConfigureAwait(false);
                    if (read == 0)
                    {
                        return length <= _config.MaxBodyBytes
                            ? ResponseDigest.DigestBody(buffer.AsSpan(0, length), contentType, _config.Compare.IgnoreJsonFields)
                            : System.IO.Hashing.XxHash3.HashToUInt64(buffer.AsSpan(0, length));
                    }

                    length += read;
                }

                // Bigger than the buffer: capture (up to the cap, then a running hash) as before.
                using var capture = new BodyCapture(_config.MaxBodyBytes);
                capture.Append(buffer.AsSpan(0, length));
                int more;
                while ((more = await stream.ReadAsync(buffer, cancellationToken).ConfigureAwait(false)) > 0)
                {
                    capture.Append(buffer.AsSpan(0, more));
                }

                return capture.Digest(contentType, _config.Compare.IgnoreJsonFields);
            }
            finally
            {
                System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
            }
        }
    }

    private void Record(MirrorItem item, ResponseDigest? shadow, string? error)
    {
        if (!_config.Compare.Enabled)
        {
            return;
        }

        var difference = shadow is { } digest ? item.PrimaryDigest(_config.Compare).Difference(digest) : "error";
        var matched = difference is null;
        _compare[difference switch
        {
            null => 0,
            "status" => 1,
            "headers" => 2,
            "body" => 3,
            _ => 4,
        }].Inc(Exemplar.None);
        Interlocked.Increment(ref matched ? ref _matchCount : ref _mismatchCount);
        if (!matched)
        {
            L7Log.ShadowMismatch(_logger, _route, ShadowId, error is null ? difference! : $"error ({error})", item.Method, item.PathAndQuery);
        }

        bool changed;
        ShadowConsistency state;
        int mismatches;
        int samples;
        lock (_windowLock)
        {
            changed = _window.Add(matched);
            (state, mismatches, samples) = (_window.State, _window.Mismatches, _window.Samples);
        }

        if (changed)
        {
            _runtime.Metrics.HttpShadowConsistent.WithLabels(_route, ShadowId).Set(state switch
            {
                ShadowConsistency.Consistent => 1,
                ShadowConsistency.Inconsistent => 0,
                _ => -1,
            });
            L7Log.ShadowConsistencyChanged(_logger, _route, ShadowId, state.ToString().ToLowerInvariant(), mismatches, samples);
        }
    }

    internal static string FormatHost(string host) => host.Contains(':', StringComparison.Ordinal) && !host.StartsWith('[') ? $"[{host}]" : host;

    private sealed record EndpointCache(RuntimeSnapshot Snapshot, EndpointState? Endpoint, HttpMessageInvoker? Invoker);

    private sealed record UriCache(EndpointState Endpoint, string PathAndQuery, Uri Uri);
}

internal enum MirrorAdmission
{
    Dropped,
    Queued,
    Slot,
}

public sealed record ShadowStats(
    string Shadow,
    ShadowConsistency Consistency,
    long Queued,
    long Dropped,
    long Sent,
    long Errors,
    long Matches,
    long Mismatches,
    int WindowSamples,
    int WindowMismatches,
    int QueueDepth);
