using System.Buffers;
using System.Diagnostics;
using System.Net.Sockets;
using System.Text.Json;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Primitives;
using Microsoft.Net.Http.Headers;
using Prometheus;
using Relay.Clusters;
using Relay.Configuration;
using Relay.L7.Mirroring;
using Yarp.ReverseProxy.Forwarder;

namespace Relay.L7;

/// <summary>
/// The L7 data path for one request: resolve its L7 session (affinity), pick an endpoint from the
/// shared cluster registry, forward with YARP's <see cref="IHttpForwarder"/>, retry what is safe to
/// retry, answer what is not with a JSON 502, and hand a copy to the route's shadows.
/// </summary>
internal sealed partial class L7Proxy
{
    private readonly RelayRuntime _runtime;
    private readonly IHttpForwarder _forwarder;
    private readonly L7Invokers _invokers;
    private readonly ILogger _logger;
    private static readonly RequestState s_noState = new();
    private readonly L7Transformer _transformer = new();
    private readonly System.Runtime.CompilerServices.ConditionalWeakTable<EndpointState, string> _prefixes = new();

    public L7Proxy(RelayRuntime runtime, IHttpForwarder forwarder, L7Invokers invokers, ILogger logger)
    {
        _runtime = runtime;
        _forwarder = forwarder;
        _invokers = invokers;
        _logger = logger;
    }

    public async Task HandleAsync(HttpContext context, L7Route route)
    {
        var started = Stopwatch.GetTimestamp();
        var config = route.Config;
        var http = route.Http;
        var time = _runtime.TimeProvider;
        var request = context.Request;
        var method = request.Method;
        Interlocked.Increment(ref route.Requests);
        route.Budget.OnRequest();
        if (!_runtime.Snapshot.Clusters.TryGetValue(config.Cluster, out var cluster))
        {
            await FailAsync(context, route, StatusCodes.Status503ServiceUnavailable, "no_endpoint", null, $"cluster \"{config.Cluster}\" is not configured").ConfigureAwait(false);
            Finish(route, context, started);
            return;
        }

        var now = time.GetTimestamp();
        var state = route.Affinity is null && route.Shadows.IsEmpty ? s_noState : new RequestState();
        var session = route.Affinity is { } table ? ResolveSession(context, table, cluster, state, now) : null;

        var mirror = http.Mirror;
        var idempotent = HttpMethodsInfo.IsIdempotent(method);
        var mirrorThis = mirror is not null && !route.Shadows.IsEmpty
            && (mirror.Methods == MirrorMethods.All || !idempotent)
            && (mirror.Percent >= 100 || Random.Shared.NextDouble() * 100 < mirror.Percent);

        // Buffer a small body so that a retry, and the shadows, can send it again.
        byte[]? body = null;
        var bodyLength = 0;
        var replayable = true;
        var canHaveBody = context.Features.Get<IHttpRequestBodyDetectionFeature>()?.CanHaveBody ?? request.ContentLength > 0;
        if (canHaveBody)
        {
            var cap = Math.Max(http.MaxRetryBodyBytes, mirrorThis ? mirror!.MaxBodyBytes : 0);
            try
            {
                (body, bodyLength, replayable) = await BufferBodyAsync(context, cap).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is IOException or OperationCanceledException or BadHttpRequestException)
            {
                // The client went away or sent a malformed body before we forwarded anything.
                L7Log.ResponseAborted(_logger, route.Name, method, request.Path.Value ?? "/", "-", "RequestBodyClient", ex.Message);
                context.Abort();
                Finish(route, context, started);
                return;
            }
            if (mirrorThis && (!replayable || bodyLength > mirror!.MaxBodyBytes))
            {
                mirrorThis = false;
                foreach (var shadow in route.Shadows)
                {
                    _runtime.Metrics.HttpMirror.WithLabels(route.Name, shadow.ShadowId, "skipped_body").Inc();
                }
            }
        }

        BodyCapture? capture = null;
        var responseBody = context.Response.Body;
        if (mirrorThis)
        {
            capture = new BodyCapture(mirror!.MaxBodyBytes);
            state.Compare = mirror.Compare;
            context.Response.Body = new CapturingStream(responseBody, capture);
        }

        if (state.CookieToSet is not null || state.Compare is not null)
        {
            context.Features.Set(state);
        }

        UpgradeSession? upgrade = null;
        if (context.Features.Get<IHttpUpgradeFeature>() is { IsUpgradableRequest: true } upgradeFeature)
        {
            upgrade = new UpgradeSession(_runtime, route.Name, context, upgradeFeature, _logger);
        }

        var attempts = Math.Max(1, http.Retries.Attempts);

        // The endpoints tried so far; the array is only needed once a request is retried.
        EndpointState? first = null;
        EndpointState?[]? tried = null;
        EndpointState? served = null;
        var success = false;
        var retried = false;
        try
        {
            for (var attempt = 0; attempt < attempts; attempt++)
            {
                now = time.GetTimestamp();
                var endpoint = Choose(route, cluster, session, attempt == 0 ? default : tried.AsSpan(0, attempt), now, attempt);
                if (endpoint is null)
                {
                    L7Log.NoEndpoint(_logger, route.Name, cluster.Name, method, request.Path.Value ?? "/");
                    await FailAsync(context, route, StatusCodes.Status503ServiceUnavailable, "no_endpoint", attempt == 0 ? null : tried![attempt - 1],
                        attempt == 0 ? $"no endpoint of cluster \"{cluster.Name}\" is available" : $"no other endpoint of cluster \"{cluster.Name}\" is available after {attempt} failed attempt(s)").ConfigureAwait(false);
                    return;
                }

                if (attempt == 0)
                {
                    first = endpoint;
                }
                else
                {
                    tried![attempt] = endpoint;
                }
                if (body is not null)
                {
                    request.Body = new MemoryStream(body, 0, bodyLength, writable: false);
                }

                upgrade?.SetEndpoint(endpoint);
                endpoint.SessionStarted();
                ForwarderError error;
                try
                {
                    error = await _forwarder.SendAsync(context, Prefix(endpoint), _invokers.For(cluster), route.RequestConfig, _transformer).ConfigureAwait(false);
                }
                finally
                {
                    endpoint.SessionEnded();
                }

                if (error == ForwarderError.None)
                {
                    endpoint.ConnectSucceeded();
                    served = endpoint;
                    success = true;
                    break;
                }

                var exception = context.Features.Get<IForwarderErrorFeature>()?.Exception;
                var detail = Describe(exception, error);
                if (context.Response.HasStarted || error is not (ForwarderError.Request or ForwarderError.RequestTimedOut or ForwarderError.RequestBodyDestination))
                {
                    // The client went away, or the upstream failed after the response began: nothing to
                    // retry. An upstream failure is still a passive health signal.
                    if (IsUpstreamFault(error))
                    {
                        _runtime.ReportPassiveFailure(cluster, endpoint, isConnectFailure: false);
                        Interlocked.Increment(ref route.Failures);
                        _runtime.Metrics.HttpFailures.WithLabels(route.Name, "response").Inc();
                        L7Log.RequestFailed(_logger, route.Name, method, request.Path.Value ?? "/", endpoint.Id, "response already started", detail);
                    }
                    else
                    {
                        L7Log.ResponseAborted(_logger, route.Name, method, request.Path.Value ?? "/", endpoint.Id, error.ToString(), detail);
                    }

                    context.Abort();
                    return;
                }

                var notSent = IsConnectFailure(exception);
                _runtime.ReportPassiveFailure(cluster, endpoint, isConnectFailure: notSent);
                if (notSent)
                {
                    _runtime.Metrics.ConnectFailures.WithLabels(cluster.Name, endpoint.Id, "UpstreamConnect").Inc();
                }

                string? refusal = null;
                if (!replayable)
                {
                    refusal = "body_not_buffered";
                }
                else if (!notSent && !idempotent && (http.IdempotencyKeyHeader is null || StringValues.IsNullOrEmpty(request.Headers[http.IdempotencyKeyHeader])))
                {
                    refusal = "not_retryable";
                }
                else if (attempt + 1 >= attempts)
                {
                    refusal = "attempts";
                }
                else if (!route.Budget.TryWithdraw())
                {
                    refusal = "budget";
                }

                if (refusal is not null)
                {
                    L7Log.RequestFailed(_logger, route.Name, method, request.Path.Value ?? "/", endpoint.Id, refusal, detail);
                    await FailAsync(context, route, StatusCodes.Status502BadGateway, refusal, endpoint, detail).ConfigureAwait(false);
                    return;
                }

                var reason = notSent ? "connect" : error == ForwarderError.RequestTimedOut ? "timeout" : "reset";
                if (tried is null)
                {
                    tried = new EndpointState?[attempts];
                    tried[0] = first;
                }

                retried = true;
                Interlocked.Increment(ref route.Retries);
                _runtime.Metrics.HttpRetries.WithLabels(route.Name, reason).Inc();
                L7Log.Retry(_logger, route.Name, attempt + 1, method, request.Path.Value ?? "/", endpoint.Id, error.ToString(), detail);
                context.Features.Set<IForwarderErrorFeature>(null);
                context.Response.Clear();
                var delay = RetryBudget.Delay(http.Retries, attempt + 1);
                if (delay > TimeSpan.Zero)
                {
                    try
                    {
                        await Task.Delay(delay, time, context.RequestAborted).ConfigureAwait(false);
                    }
                    catch (OperationCanceledException)
                    {
                        return;
                    }
                }
            }
        }
        finally
        {
            upgrade?.End();
            if (retried && session is not null && served is not null && first is not null && !ReferenceEquals(first, served))
            {
                // The session's endpoint failed this request and another served it: follow the request.
                MoveSession(route, session, first, served, "an attempt on it failed");
            }

            if (mirrorThis)
            {
                context.Response.Body = responseBody;
            }

            if (success && mirrorThis)
            {
                var copies = Mirror(context, route, served!, body, bodyLength, state, capture!);
                body = null;
                capture = null;
                if (copies.ShadowsToStart is not null)
                {
                    // Copies that got a slot are sent from this thread, but only once the client has
                    // the whole primary response: a copy must never delay it.
                    if (upgrade is null)
                    {
                        try
                        {
                            await context.Response.CompleteAsync().ConfigureAwait(false);
                        }
                        catch (Exception ex) when (ex is IOException or InvalidOperationException or OperationCanceledException)
                        {
                            // The client is gone or the response cannot end cleanly; the copies go anyway.
                        }
                    }

                    copies.Start();
                }
            }

            capture?.Dispose();
            if (body is not null)
            {
                ArrayPool<byte>.Shared.Return(body);
            }

            if (state.CookieToSet is not null || state.Compare is not null)
            {
                context.Features.Set<RequestState>(null);
            }

            Finish(route, context, started);
        }
    }

    private static void Finish(L7Route route, HttpContext context, long started)
    {
        // No exemplars: nothing on this path has a trace context, and asking for one costs per request.
        route.StatusCounter(context.Response.HasStarted || !context.RequestAborted.IsCancellationRequested ? context.Response.StatusCode : 0).Inc(Exemplar.None);
        route.Duration.Observe(Stopwatch.GetElapsedTime(started).TotalSeconds, Exemplar.None);
    }

    private AffinitySession? ResolveSession(HttpContext context, AffinityTable table, ClusterState cluster, RequestState state, long now)
    {
        var affinity = table.Config;
        string? key = affinity.Mode == AffinityMode.Cookie
            ? context.Request.Cookies[affinity.Name]
            : context.Request.Headers[affinity.Name].ToString();
        if (string.IsNullOrEmpty(key) || !AffinityTable.IsAcceptableKey(key))
        {
            if (affinity.Mode == AffinityMode.Header)
            {
                return null;
            }

            key = AffinityTable.NewKey();
            state.CookieToSet = $"{affinity.Name}={key}; Path=/; HttpOnly; SameSite=Lax";
        }

        if (table.TryGet(key, out var session))
        {
            session.Touch(now);
            return session;
        }

        // A new L7 session starts on the endpoint the cluster's policy picks; an unknown key from
        // the client (one we forgot, or a restart) is adopted so that its next requests stick.
        var endpoint = _runtime.Pick(cluster, now, []);
        if (endpoint is null)
        {
            state.CookieToSet = null;
            return null;
        }

        session = table.TryAdd(key, endpoint, _runtime.TimeProvider.GetUtcNow(), now);
        if (session is null)
        {
            state.CookieToSet = null;
            return null;
        }

        session.Touch(now);
        return session;
    }

    /// <summary>
    /// The endpoint for an attempt. A session stays on its endpoint while that one is available;
    /// otherwise it moves, to a shadow known to answer like the primary if there is one, else to
    /// what the cluster's policy picks.
    /// </summary>
    private EndpointState? Choose(L7Route route, ClusterState cluster, AffinitySession? session, ReadOnlySpan<EndpointState?> tried, long now, int attempt)
    {
        if (session is null)
        {
            return _runtime.Pick(cluster, now, tried);
        }

        var pinned = session.Endpoint;
        if (attempt == 0 && pinned.IsAvailable(now) && !pinned.Removed)
        {
            return pinned;
        }

        var target = route.BestConsistentShadow(now, tried);
        var kind = "shadow";
        if (target is null)
        {
            target = _runtime.Pick(cluster, now, tried);
            kind = "cluster";
        }

        // A pick among ejected endpoints can land on the pinned one again: then nothing moves.
        if (target is not null && attempt == 0 && !ReferenceEquals(target, pinned))
        {
            MoveSession(route, session, pinned, target, WhyUnavailable(pinned, now), kind);
        }

        return target;
    }

    private void MoveSession(L7Route route, AffinitySession session, EndpointState from, EndpointState to, string reason, string? kind = null)
    {
        if (!session.TryMove(from, to))
        {
            return;
        }

        kind ??= route.Shadows.Any(s => s.ShadowId == to.Id) ? "shadow" : "cluster";
        Interlocked.Increment(ref route.AffinityMoves);
        _runtime.Metrics.HttpAffinityMoves.WithLabels(route.Name, kind).Inc();
        L7Log.AffinityMoved(_logger, route.Name, session.Key, from.Id, to.Id, kind, reason);
    }

    private static string WhyUnavailable(EndpointState endpoint, long now) =>
        endpoint.Removed ? "it was removed from the configuration"
        : endpoint.Draining ? "it is drained"
        : !endpoint.ActiveHealthy ? "its health probes fail"
        : endpoint.IsEjected(now) ? "it is ejected after passive failures"
        : "it is unavailable";

    private static async ValueTask<(byte[]? Body, int Length, bool Replayable)> BufferBodyAsync(HttpContext context, int cap)
    {
        var request = context.Request;
        if (request.ContentLength is long declared && declared > cap)
        {
            return (null, 0, false);
        }

        var buffer = ArrayPool<byte>.Shared.Rent(Math.Max(1, (int)Math.Min(cap + 1L, request.ContentLength + 1 ?? 16 * 1024)));
        var length = 0;
        try
        {
            while (true)
            {
                if (length == buffer.Length)
                {
                    if (length > cap)
                    {
                        break;
                    }

                    var bigger = ArrayPool<byte>.Shared.Rent(Math.Min(cap + 1, buffer.Length * 2));
                    buffer.AsSpan(0, length).CopyTo(bigger);
                    ArrayPool<byte>.Shared.Return(buffer);
                    buffer = bigger;
                }

                var read = await request.Body.ReadAsync(buffer.AsMemory(length), context.RequestAborted).ConfigureAwait(false);
                if (read == 0)
                {
                    return (buffer, length, true);
                }

                length += read;
                if (length > cap)
                {
                    break;
                }
            }
        }
        catch
        {
            ArrayPool<byte>.Shared.Return(buffer);
            throw;
        }

        // Too big to keep: send what was read, then the rest, once.
        request.Body = new PrefixedStream(buffer, length, request.Body);
        return (null, 0, false);
    }

    /// <summary>Hands the copy to every shadow (queued, dropped or given a slot, and counted); the slotted ones are started by the caller.</summary>
    private static PendingCopies Mirror(HttpContext context, L7Route route, EndpointState primary, byte[]? body, int bodyLength, RequestState state, BodyCapture capture)
    {
        var request = context.Request;
        var headers = new KeyValuePair<string, StringValues>[request.Headers.Count];
        var i = 0;
        foreach (var header in request.Headers)
        {
            headers[i++] = header;
        }

        var item = new MirrorItem(method: request.Method, pathAndQuery: request.PathBase.Add(request.Path).ToUriComponent() + request.QueryString.ToUriComponent(),
            headers, body, bodyLength, context.Response.StatusCode, state.PrimaryHeaders, state.PrimaryContentType, capture);
        object? toStart = null;
        foreach (var shadow in route.Shadows)
        {
            if (shadow.ShadowId != primary.Id && shadow.TryAdmit(item) == MirrorAdmission.Slot)
            {
                toStart = toStart switch
                {
                    null => shadow,
                    ShadowMirror one => new List<ShadowMirror> { one, shadow },
                    List<ShadowMirror> many => Add(many, shadow),
                    _ => toStart,
                };
            }
        }

        // Every admitted shadow holds its own reference now.
        item.Release();
        return new PendingCopies(item, toStart);

        static List<ShadowMirror> Add(List<ShadowMirror> list, ShadowMirror shadow)
        {
            list.Add(shadow);
            return list;
        }
    }

    /// <summary>The shadows (one, or a list) that admitted a copy into a free slot and wait for <see cref="Start"/>.</summary>
    private readonly record struct PendingCopies(MirrorItem Item, object? ShadowsToStart)
    {
        public void Start()
        {
            switch (ShadowsToStart)
            {
                case ShadowMirror one:
                    one.Start(Item);
                    break;
                case List<ShadowMirror> many:
                    foreach (var shadow in many)
                    {
                        shadow.Start(Item);
                    }

                    break;
            }
        }
    }

    private string Prefix(EndpointState endpoint)
    {
        if (_prefixes.TryGetValue(endpoint, out var prefix))
        {
            return prefix;
        }

        var address = endpoint.Config.Address;
        prefix = $"http://{ShadowMirror.FormatHost(address.Host)}:{address.Port}/";
        _prefixes.AddOrUpdate(endpoint, prefix);
        return prefix;
    }

    private async Task FailAsync(HttpContext context, L7Route route, int status, string reason, EndpointState? endpoint, string detail)
    {
        Interlocked.Increment(ref route.Failures);
        _runtime.Metrics.HttpFailures.WithLabels(route.Name, reason).Inc();
        if (context.Response.HasStarted)
        {
            context.Abort();
            return;
        }

        context.Response.Clear();
        context.Response.StatusCode = status;
        context.Response.ContentType = "application/json";
        context.Response.Headers["X-Relay-Error"] = reason;
        var buffer = new ArrayBufferWriter<byte>(512);
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteString("error", reason switch
            {
                "not_retryable" => "the upstream failed after the request may have reached it, and the request is not idempotent, so it was not retried",
                "body_not_buffered" => "the upstream failed and the request body was too large to resend",
                "attempts" => "the upstream failed on every attempt",
                "budget" => "the upstream failed and the route's retry budget is spent",
                _ => "no upstream endpoint is available",
            });
            json.WriteString("reason", reason);
            json.WriteString("route", route.Name);
            json.WriteString("endpoint", endpoint?.Id);
            json.WriteString("detail", detail);
            if (reason == "not_retryable")
            {
                var header = route.Config.Http?.IdempotencyKeyHeader;
                json.WriteString("hint", header is null
                    ? "the route has no idempotencyKeyHeader; configure one to let keyed non-idempotent requests be retried"
                    : $"send a {header} header to let the relay retry this request on another endpoint");
            }

            json.WriteEndObject();
        }

        context.Response.ContentLength = buffer.WrittenCount;
        try
        {
            await context.Response.Body.WriteAsync(buffer.WrittenMemory, context.RequestAborted).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is IOException or OperationCanceledException)
        {
            // The client is gone; the failure is counted already.
        }
    }

    private static bool IsConnectFailure(Exception? exception)
    {
        for (var ex = exception; ex is not null; ex = ex.InnerException)
        {
            if (ex is HttpRequestException { HttpRequestError: HttpRequestError.ConnectionError or HttpRequestError.NameResolutionError })
            {
                return true;
            }

            if (ex is SocketException { SocketErrorCode: SocketError.ConnectionRefused or SocketError.HostUnreachable or SocketError.NetworkUnreachable or SocketError.TimedOut })
            {
                return true;
            }
        }

        return false;
    }

    private static bool IsUpstreamFault(ForwarderError error) => error is ForwarderError.ResponseBodyDestination or ForwarderError.UpgradeResponseDestination
        or ForwarderError.UpgradeRequestDestination or ForwarderError.RequestBodyDestination or ForwarderError.Request or ForwarderError.RequestTimedOut;

    private static string Describe(Exception? exception, ForwarderError error)
    {
        if (exception is null)
        {
            return error.ToString();
        }

        var inner = exception;
        while (inner.InnerException is not null)
        {
            inner = inner.InnerException;
        }

        return ReferenceEquals(inner, exception) ? exception.Message : $"{exception.Message} ({inner.Message})";
    }

    /// <summary>Per-request state the transformer reads; set as a feature only when needed.</summary>
    internal sealed class RequestState
    {
        public string? CookieToSet { get; set; }

        /// <summary>Set when the request is mirrored: how the primary's headers are digested.</summary>
        public CompareConfig? Compare { get; set; }

        public ulong PrimaryHeaders { get; set; }

        public string? PrimaryContentType { get; set; }
    }

    /// <summary>Adds the affinity cookie and snapshots the primary's headers for the shadows.</summary>
    private sealed class L7Transformer : HttpTransformer
    {
        public override ValueTask<bool> TransformResponseAsync(HttpContext httpContext, HttpResponseMessage? proxyResponse, CancellationToken cancellationToken)
        {
            // The base copies headers synchronously; finish without a state machine when it did.
            var copy = base.TransformResponseAsync(httpContext, proxyResponse, cancellationToken);
            if (!copy.IsCompletedSuccessfully)
            {
                return AfterCopyAsync(copy, httpContext, proxyResponse);
            }

            var result = copy.Result;
            AddAffinityAndDigest(httpContext, proxyResponse);
            return new ValueTask<bool>(result);
        }

        private static async ValueTask<bool> AfterCopyAsync(ValueTask<bool> copy, HttpContext httpContext, HttpResponseMessage? proxyResponse)
        {
            var result = await copy.ConfigureAwait(false);
            AddAffinityAndDigest(httpContext, proxyResponse);
            return result;
        }

        private static void AddAffinityAndDigest(HttpContext httpContext, HttpResponseMessage? proxyResponse)
        {
            if (proxyResponse is not null && httpContext.Features.Get<RequestState>() is { } state)
            {
                if (state.CookieToSet is { } cookie)
                {
                    httpContext.Response.Headers.Append(HeaderNames.SetCookie, cookie);
                }

                if (state.Compare is { Enabled: true } compare)
                {
                    state.PrimaryHeaders = ResponseDigest.DigestHeaders(proxyResponse, compare.IgnoreHeaders);
                    state.PrimaryContentType = proxyResponse.Content.Headers.ContentType?.MediaType;
                }
            }
        }
    }
}

/// <summary>Shared upstream clients, one per cluster (its connect timeout), as YARP's direct-forwarding sample builds them.</summary>
internal sealed class L7Invokers : IDisposable
{
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, (TimeSpan Timeout, HttpMessageInvoker Invoker)> _byCluster = new(StringComparer.Ordinal);
    private readonly List<HttpMessageInvoker> _retired = [];

    public HttpMessageInvoker For(ClusterState cluster)
    {
        if (_byCluster.TryGetValue(cluster.Name, out var current) && current.Timeout == cluster.Config.ConnectTimeout)
        {
            return current.Invoker;
        }

        lock (_retired)
        {
            if (_byCluster.TryGetValue(cluster.Name, out var entry) && entry.Timeout == cluster.Config.ConnectTimeout)
            {
                return entry.Invoker;
            }

            if (entry.Invoker is not null)
            {
                // In-flight requests may still use it; dispose at shutdown.
                _retired.Add(entry.Invoker);
            }

            var invoker = new HttpMessageInvoker(new SocketsHttpHandler
            {
                UseProxy = false,
                AllowAutoRedirect = false,
                AutomaticDecompression = System.Net.DecompressionMethods.None,
                UseCookies = false,
                EnableMultipleHttp2Connections = true,
                ActivityHeadersPropagator = null,
                ConnectTimeout = cluster.Config.ConnectTimeout,
                PooledConnectionIdleTimeout = TimeSpan.FromSeconds(60),
            });
            _byCluster[cluster.Name] = (cluster.Config.ConnectTimeout, invoker);
            return invoker;
        }
    }

    /// <summary>For shadow copies: the client of the shadow endpoint's own cluster.</summary>
    public HttpMessageInvoker For(RelayRuntime runtime, EndpointState endpoint) =>
        runtime.Snapshot.Clusters.TryGetValue(endpoint.ClusterName, out var cluster) ? For(cluster) : throw new InvalidOperationException($"cluster {endpoint.ClusterName} is gone");

    public void Dispose()
    {
        lock (_retired)
        {
            foreach (var (_, invoker) in _byCluster.Values)
            {
                invoker.Dispose();
            }

            foreach (var invoker in _retired)
            {
                invoker.Dispose();
            }

            _byCluster.Clear();
            _retired.Clear();
        }
    }
}
