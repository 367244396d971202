using System.Threading.Channels;
using Prometheus;
using Relay.Clusters;
using Relay.Configuration;

namespace Relay.L7.Mirroring;

/// <summary>
/// One shadow of one route: a bounded queue of copies, a few workers that send them, compare the
/// shadow's response with the primary's, and keep the shadow's consistency state. The primary
/// never waits here: <see cref="TryEnqueue"/> either queues or drops (and counts) at once.
/// </summary>
internal sealed class ShadowMirror : IAsyncDisposable
{
    // Hop-by-hop headers (RFC 9110 7.6.1) and Host are not copied; HttpClient sets its own.
    private static readonly HashSet<string> s_skipHeaders = new(StringComparer.OrdinalIgnoreCase)
    {
        "Host", "Connection", "Keep-Alive", "Proxy-Connection", "TE", "Trailer", "Transfer-Encoding", "Upgrade", "Content-Length",
    };

    private readonly string _route;
    private readonly MirrorConfig _config;
    private readonly RelayRuntime _runtime;
    private readonly Func<EndpointState, HttpMessageInvoker> _invokers;
    private readonly TimeSpan _timeout;
    private readonly ILogger _logger;
    private readonly Channel<MirrorItem> _queue;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task[] _workers;
    private readonly ConsistencyWindow _window;
    private readonly object _windowLock = new();
    private readonly Counter.Child _queued;
    private readonly Counter.Child _dropped;
    private readonly Counter.Child _sent;
    private readonly Counter.Child _errors;
    private long _queuedCount;
    private long _droppedCount;
    private long _sentCount;
    private long _errorCount;
    private long _matchCount;
    private long _mismatchCount;

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
        _queue = Channel.CreateBounded<MirrorItem>(new BoundedChannelOptions(config.QueueLength)
        {
            FullMode = BoundedChannelFullMode.Wait,
            SingleWriter = false,
            SingleReader = config.Concurrency == 1,
        });
        var metrics = runtime.Metrics;
        _queued = metrics.HttpMirror.WithLabels(route, shadowId, "queued");
        _dropped = metrics.HttpMirror.WithLabels(route, shadowId, "dropped");
        _sent = metrics.HttpMirror.WithLabels(route, shadowId, "sent");
        _errors = metrics.HttpMirror.WithLabels(route, shadowId, "error");
        metrics.HttpShadowConsistent.WithLabels(route, shadowId).Set(-1);
        _workers = new Task[config.Concurrency];
        for (var i = 0; i < _workers.Length; i++)
        {
            _workers[i] = Task.Run(() => WorkAsync(_stop.Token));
        }
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

    public int QueueDepth => _queue.Reader.Count;

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
                _queue.Reader.Count);
        }
    }

    /// <summary>The current endpoint for the shadow id, or null when the config no longer has it.</summary>
    public EndpointState? Endpoint() => _runtime.FindEndpoint(ShadowId);

    /// <summary>Queues a copy without waiting; a full queue drops it. Takes a reference on success.</summary>
    public bool TryEnqueue(MirrorItem item)
    {
        item.AddReference();
        if (_queue.Writer.TryWrite(item))
        {
            Interlocked.Increment(ref _queuedCount);
            _queued.Inc();
            return true;
        }

        item.Release();
        Interlocked.Increment(ref _droppedCount);
        _dropped.Inc();
        return false;
    }

    public async ValueTask DisposeAsync()
    {
        _queue.Writer.TryComplete();
        await _stop.CancelAsync().ConfigureAwait(false);
        try
        {
            await Task.WhenAll(_workers).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // Workers end by cancellation.
        }

        while (_queue.Reader.TryRead(out var left))
        {
            left.Release();
        }

        _runtime.Metrics.HttpShadowConsistent.RemoveLabelled(_route, ShadowId);
        _stop.Dispose();
    }

    private async Task WorkAsync(CancellationToken cancellationToken)
    {
        while (await _queue.Reader.WaitToReadAsync(cancellationToken).ConfigureAwait(false))
        {
            while (_queue.Reader.TryRead(out var item))
            {
                try
                {
                    await SendAndCompareAsync(item, cancellationToken).ConfigureAwait(false);
                }
                finally
                {
                    item.Release();
                }
            }
        }
    }

    private async Task SendAndCompareAsync(MirrorItem item, CancellationToken cancellationToken)
    {
        var endpoint = Endpoint();
        if (endpoint is null)
        {
            Record(item, null, "shadow endpoint is not configured");
            return;
        }

        var address = endpoint.Config.Address;
        using var request = new HttpRequestMessage(new HttpMethod(item.Method), $"http://{FormatHost(address.Host)}:{address.Port}{item.PathAndQuery}");
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
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(_timeout);
        ResponseDigest shadow;
        try
        {
            using var response = await _invokers(endpoint).SendAsync(request, timeout.Token).ConfigureAwait(false);
            Interlocked.Increment(ref _sentCount);
            _sent.Inc();
            using var capture = new BodyCapture(_config.MaxBodyBytes);
            var stream = await response.Content.ReadAsStreamAsync(timeout.Token).ConfigureAwait(false);
            await using (stream.ConfigureAwait(false))
            {
                var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(16 * 1024);
                try
                {
                    int read;
                    while ((read = await stream.ReadAsync(buffer, timeout.Token).ConfigureAwait(false)) > 0)
                    {
                        capture.Append(buffer.AsSpan(0, read));
                    }
                }
                finally
                {
                    System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
                }
            }

            if (!_config.Compare.Enabled)
            {
                return;
            }

            var contentType = response.Content.Headers.ContentType?.MediaType;
            shadow = new ResponseDigest(
                (int)response.StatusCode,
                ResponseDigest.DigestHeaders(response, _config.Compare.IgnoreHeaders),
                capture.Digest(contentType, _config.Compare.IgnoreJsonFields));
        }
        catch (Exception ex) when (ex is HttpRequestException or OperationCanceledException or IOException)
        {
            if (cancellationToken.IsCancellationRequested)
            {
                return;
            }

            Interlocked.Increment(ref _errorCount);
            _errors.Inc();
            L7Log.ShadowError(_logger, _route, ShadowId, ex.Message);
            Record(item, null, ex.Message);
            return;
        }

        Record(item, shadow, null);
    }

    private void Record(MirrorItem item, ResponseDigest? shadow, string? error)
    {
        if (!_config.Compare.Enabled)
        {
            return;
        }

        var difference = shadow is { } digest ? item.PrimaryDigest(_config.Compare).Difference(digest) : "error";
        var matched = difference is null;
        _runtime.Metrics.HttpMirrorCompare.WithLabels(_route, ShadowId, difference ?? "match").Inc();
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
