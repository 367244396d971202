using System.Collections.Immutable;
using System.Net;
using Relay.Admin;
using Relay.Clusters;
using Relay.Configuration;
using Relay.L7.Mirroring;
using Yarp.ReverseProxy.Forwarder;

namespace Relay.L7;

/// <summary>
/// Everything L7 in one place for <see cref="Hosting.RelayApp"/>: the HTTP listeners, the route
/// states (sessions, budgets, shadows) and YARP's forwarder, applied from the same config snapshot
/// and sharing the cluster registry of <see cref="RelayRuntime"/> with the L4 relay.
/// </summary>
public sealed class L7Host : IAsyncDisposable
{
    private readonly RelayRuntime _runtime;
    private readonly ILoggerFactory _loggerFactory;
    private readonly Lazy<L7Proxy> _proxy;
    private ServiceProvider? _forwarderServices;
    private readonly L7Invokers _invokers = new();
    private readonly L7ListenerManager _listeners;
    private readonly CancellationTokenSource _stop = new();
    private readonly SemaphoreSlim _applyLock = new(1, 1);
    private Task? _sweeper;

    public L7Host(RelayRuntime runtime, TransportTuning tuning, IServiceProvider services, ILoggerFactory loggerFactory)
    {
        _runtime = runtime;
        _loggerFactory = loggerFactory;
        _proxy = new Lazy<L7Proxy>(CreateProxy, LazyThreadSafetyMode.ExecutionAndPublication);
        _listeners = new L7ListenerManager(_proxy, tuning, services, loggerFactory);
        runtime.Metrics.Registry.AddBeforeCollectCallback(UpdateGauges);
    }

    /// <summary>
    /// YARP's forwarder, made when the first HTTP route starts listening: a relay with TCP routes only
    /// never loads YARP. It needs only logging and a TimeProvider; a private container keeps it out of
    /// the admin application's services.
    /// </summary>
    private L7Proxy CreateProxy()
    {
        var collection = new ServiceCollection();
        collection.AddSingleton(_loggerFactory);
        collection.AddSingleton(typeof(ILogger<>), typeof(Logger<>));
        collection.AddSingleton(_runtime.TimeProvider);
        collection.AddHttpForwarder();
        _forwarderServices = collection.BuildServiceProvider();
        var forwarder = _forwarderServices.GetRequiredService<IHttpForwarder>();
        return new L7Proxy(_runtime, forwarder, _invokers, _loggerFactory.CreateLogger<L7Proxy>());
    }

    public IReadOnlyDictionary<string, IPEndPoint> BoundAddresses => _listeners.BoundAddresses;

    internal IReadOnlyDictionary<string, L7Route> Routes => _listeners.Routes;

    /// <summary>Only the TCP routes of <paramref name="config"/>, for the L4 listeners.</summary>
    public static RelayConfig TcpOnly(RelayConfig config) =>
        config.Routes.Values.Any(r => r.Protocol == RouteProtocol.Http)
            ? config with { Routes = config.Routes.Where(r => r.Value.Protocol == RouteProtocol.Tcp).ToImmutableDictionary(StringComparer.Ordinal) }
            : config;

    /// <summary>Applies the HTTP routes of <paramref name="config"/>: state first, then listeners. Returns listen errors.</summary>
    public async Task<IReadOnlyList<string>> ApplyAsync(RelayConfig config, CancellationToken cancellationToken)
    {
        await _applyLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var http = config.Routes.Values.Where(r => r.Protocol == RouteProtocol.Http).ToList();
            var retiring = new List<ShadowMirror>();
            foreach (var route in http)
            {
                if (_listeners.Routes.TryGetValue(route.Name, out var existing))
                {
                    if (existing.Update(route))
                    {
                        retiring.AddRange(existing.Shadows);
                        existing.Shadows = BuildShadows(route);
                    }
                }
                else
                {
                    var state = new L7Route(route, _runtime.Metrics) { Shadows = BuildShadows(route) };
                    _listeners.Routes[route.Name] = state;
                }
            }

            foreach (var name in _listeners.Routes.Keys.ToArray())
            {
                if (!http.Any(r => r.Name == name) && _listeners.Routes.TryRemove(name, out var removed))
                {
                    retiring.AddRange(removed.Shadows);
                    _runtime.Metrics.HttpAffinitySessions.RemoveLabelled(name);
                }
            }

            foreach (var shadow in retiring)
            {
                await shadow.DisposeAsync().ConfigureAwait(false);
            }

            return await _listeners.ApplyAsync(http, config.Shutdown.DrainTimeout, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _applyLock.Release();
        }
    }

    public void Start() => _sweeper ??= Task.Run(() => SweepAsync(_stop.Token));

    public async Task StopAsync(TimeSpan drainTimeout)
    {
        await _listeners.StopAsync(drainTimeout).ConfigureAwait(false);
        await _stop.CancelAsync().ConfigureAwait(false);
        if (_sweeper is not null)
        {
            try
            {
                await _sweeper.ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                // The sweeper ends by cancellation.
            }
        }

        foreach (var route in _listeners.Routes.Values)
        {
            foreach (var shadow in route.Shadows)
            {
                await shadow.DisposeAsync().ConfigureAwait(false);
            }

            route.Shadows = [];
        }
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync(TimeSpan.Zero).ConfigureAwait(false);
        await _listeners.DisposeAsync().ConfigureAwait(false);
        _invokers.Dispose();
        if (_forwarderServices is { } forwarderServices)
        {
            await forwarderServices.DisposeAsync().ConfigureAwait(false);
        }
        _stop.Dispose();
        _applyLock.Dispose();
    }

    /// <summary>The admin view of one HTTP route.</summary>
    internal L7RouteView? RouteView(string name)
    {
        if (!_listeners.Routes.TryGetValue(name, out var route))
        {
            return null;
        }

        var http = route.Config.Http ?? new HttpRouteConfig();
        return new L7RouteView(
            route.Name,
            "http",
            BoundAddresses.TryGetValue(name, out var bound) ? bound.ToString() : null,
            route.Config.Cluster,
            Interlocked.Read(ref route.Requests),
            Interlocked.Read(ref route.Retries),
            Interlocked.Read(ref route.Failures),
            route.Budget.Tokens,
            http.IdempotencyKeyHeader,
            route.Affinity is null ? null : new L7AffinityView(
                route.Affinity.Config.Mode.ToString().ToLowerInvariant(),
                route.Affinity.Config.Name,
                route.Affinity.Count,
                Interlocked.Read(ref route.AffinityMoves)),
            http.Mirror is null ? null : new L7MirrorView(
                http.Mirror.Percent,
                http.Mirror.Methods == MirrorMethods.All ? "all" : "nonIdempotent",
                http.Mirror.Header,
                [.. route.Shadows.Select(s => s.Stats())]));
    }

    internal List<L7RouteView> RouteViews() => [.. _listeners.Routes.Keys.Order(StringComparer.Ordinal).Select(RouteView).OfType<L7RouteView>()];

    /// <summary>The L7 sessions (affinity keys) of every HTTP route, or one route's.</summary>
    internal List<L7SessionView> SessionViews(string? route, string? endpoint, int limit)
    {
        var time = _runtime.TimeProvider;
        return _listeners.Routes.Values
            .Where(r => route is null || r.Name == route)
            .SelectMany(r => (r.Affinity?.Sessions ?? []).Select(s => (Route: r.Name, Session: s)))
            .Where(x => endpoint is null || x.Session.Endpoint.Id == endpoint)
            .OrderBy(x => x.Session.StartedAt)
            .Take(limit)
            .Select(x => new L7SessionView(
                x.Route,
                x.Session.Key,
                x.Session.Endpoint.Id,
                x.Session.StartedAt,
                x.Session.Requests,
                x.Session.Moves,
                time.GetElapsedTime(x.Session.LastUsedTimestamp).TotalSeconds))
            .ToList();
    }


    private ImmutableArray<ShadowMirror> BuildShadows(RouteConfig route)
    {
        if (route.Http?.Mirror is not { } mirror)
        {
            return [];
        }

        var logger = _loggerFactory.CreateLogger<ShadowMirror>();
        return [.. mirror.Shadows.Select(id => new ShadowMirror(route.Name, id, mirror, route.Http.RequestTimeout, _runtime, e => _invokers.For(_runtime, e), logger))];
    }

    private async Task SweepAsync(CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            await Task.Delay(TimeSpan.FromSeconds(1), _runtime.TimeProvider, cancellationToken).ConfigureAwait(false);
            var now = _runtime.TimeProvider.GetTimestamp();
            foreach (var route in _listeners.Routes.Values)
            {
                route.Affinity?.Sweep(_runtime.TimeProvider, now);
            }
        }
    }

    private void UpdateGauges()
    {
        foreach (var route in _listeners.Routes.Values)
        {
            _runtime.Metrics.HttpAffinitySessions.WithLabels(route.Name).Set(route.Affinity?.Count ?? 0);
        }
    }
}
