using System.Collections.Immutable;
using System.Net;
using Prometheus;
using Relay.Clusters;
using Relay.Configuration;
using Relay.Diagnostics;
using Relay.L7.Mirroring;
using Yarp.ReverseProxy.Forwarder;

namespace Relay.L7;

/// <summary>
/// The live state of one HTTP route: its config, L7 sessions, retry budget and shadows. Kept across
/// reloads while the route's name stays; the parts whose settings changed are rebuilt.
/// </summary>
internal sealed class L7Route
{
    private static readonly string[] s_statusLabels = ["error", "1xx", "2xx", "3xx", "4xx", "5xx"];

    public L7Route(RouteConfig config, RelayMetrics metrics)
    {
        Name = config.Name;
        Config = config;
        var http = config.Http ?? new HttpRouteConfig();
        Http = http;
        Affinity = http.Affinity is null ? null : new AffinityTable(http.Affinity);
        Budget = new RetryBudget(http.Retries);
        RequestConfig = NewRequestConfig(http);
        StatusCounters = [.. s_statusLabels.Select(s => metrics.HttpRequests.WithLabels(config.Name, s))];
        Duration = metrics.HttpRequestDuration.WithLabels(config.Name);
    }

    public string Name { get; }

    public RouteConfig Config { get; private set; }

    /// <summary>The route's HTTP settings (defaults when the config has none), so a request does not rebuild them.</summary>
    public HttpRouteConfig Http { get; private set; }

    public AffinityTable? Affinity { get; private set; }

    public RetryBudget Budget { get; private set; }

    public ForwarderRequestConfig RequestConfig { get; private set; }

    public ImmutableArray<ShadowMirror> Shadows { get; set; } = [];

    public Counter.Child[] StatusCounters { get; }

    public Histogram.Child Duration { get; }

    public long Requests;

    public long Retries;

    public long Failures;

    public long AffinityMoves;

    /// <summary>Applies a reloaded config; returns true when the shadows must be rebuilt.</summary>
    public bool Update(RouteConfig config)
    {
        var old = Config.Http ?? new HttpRouteConfig();
        var http = config.Http ?? new HttpRouteConfig();
        Config = config;
        Http = http;
        if (http.Affinity is null)
        {
            Affinity = null;
        }
        else if (Affinity is null || Affinity.Config.Mode != http.Affinity.Mode || Affinity.Config.Name != http.Affinity.Name)
        {
            Affinity = new AffinityTable(http.Affinity);
        }
        else
        {
            Affinity.Config = http.Affinity;
        }

        if (!Equals(old.Retries, http.Retries))
        {
            Budget = new RetryBudget(http.Retries);
        }

        RequestConfig = NewRequestConfig(http);
        return !Equals(old.Mirror, http.Mirror) || !Equals(old.RequestTimeout, http.RequestTimeout);
    }

    public Counter.Child StatusCounter(int status) => StatusCounters[status is >= 100 and < 600 ? status / 100 : 0];

    /// <summary>Available shadows marked consistent, least busy first; where a failing-over session goes first.</summary>
    public EndpointState? BestConsistentShadow(long now, ReadOnlySpan<EndpointState?> exclude)
    {
        EndpointState? best = null;
        foreach (var shadow in Shadows)
        {
            if (shadow.Consistency != ShadowConsistency.Consistent)
            {
                continue;
            }

            var endpoint = shadow.Endpoint();
            if (endpoint is null || !endpoint.IsAvailable(now) || Contains(exclude, endpoint))
            {
                continue;
            }

            if (best is null || endpoint.ActiveSessions < best.ActiveSessions)
            {
                best = endpoint;
            }
        }

        return best;
    }

    public static bool Contains(ReadOnlySpan<EndpointState?> set, EndpointState endpoint)
    {
        foreach (var item in set)
        {
            if (ReferenceEquals(item, endpoint))
            {
                return true;
            }
        }

        return false;
    }

    private static ForwarderRequestConfig NewRequestConfig(HttpRouteConfig http) => new()
    {
        ActivityTimeout = http.RequestTimeout,
        Version = HttpVersion.Version11,
        VersionPolicy = HttpVersionPolicy.RequestVersionOrLower,
    };
}
