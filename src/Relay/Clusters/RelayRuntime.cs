using System.Collections.Concurrent;
using System.Collections.Immutable;
using Relay.Configuration;
using Relay.Diagnostics;
using Relay.L4;

namespace Relay.Clusters;

/// <summary>The current configuration, its clusters with live endpoint state, and every session.</summary>
public sealed class RelayRuntime
{
    private readonly ILogger _logger;
    private readonly object _applyLock = new();
    private RuntimeSnapshot _snapshot;
    private long _nextSessionId;

    public RelayRuntime(RelayConfig config, RelayMetrics metrics, TimeProvider timeProvider, ILogger<RelayRuntime> logger)
    {
        Metrics = metrics;
        TimeProvider = timeProvider;
        _logger = logger;
        _snapshot = Build(config, ImmutableDictionary<string, ClusterState>.Empty);
        metrics.Registry.AddBeforeCollectCallback(UpdateGauges);
    }

    public RelayMetrics Metrics { get; }

    public TimeProvider TimeProvider { get; }

    public ConcurrentDictionary<long, L4Session> Sessions { get; } = new();

    public RuntimeSnapshot Snapshot => Volatile.Read(ref _snapshot);

    public long NextSessionId() => Interlocked.Increment(ref _nextSessionId);

    /// <summary>Publishes a validated configuration; endpoints keep their state when their id stays.</summary>
    public void Apply(RelayConfig config)
    {
        lock (_applyLock)
        {
            var next = Build(config, _snapshot.Clusters);
            var kept = new HashSet<EndpointState>(next.Clusters.Values.SelectMany(c => c.Endpoints), ReferenceEqualityComparer.Instance);
            foreach (var endpoint in _snapshot.Clusters.Values.SelectMany(c => c.Endpoints))
            {
                if (!kept.Contains(endpoint))
                {
                    endpoint.Removed = true;
                    Metrics.EndpointHealthy.RemoveLabelled(endpoint.ClusterName, endpoint.Id);
                    Metrics.EndpointSessions.RemoveLabelled(endpoint.ClusterName, endpoint.Id);
                }
            }

            Volatile.Write(ref _snapshot, next);
        }
    }

    public EndpointState? FindEndpoint(string id)
    {
        foreach (var cluster in Snapshot.Clusters.Values)
        {
            foreach (var endpoint in cluster.Endpoints)
            {
                if (endpoint.Id == id)
                {
                    return endpoint;
                }
            }
        }

        return null;
    }

    /// <summary>
    /// Picks an endpoint of <paramref name="cluster"/> for a new session (L4) or request (L7) and
    /// counts a pick among passively ejected endpoints (<see cref="ClusterState.Pick(long, ReadOnlySpan{EndpointState?}, out bool)"/>).
    /// </summary>
    public EndpointState? Pick(ClusterState cluster, long nowTicks, ReadOnlySpan<EndpointState?> exclude)
    {
        ArgumentNullException.ThrowIfNull(cluster);
        var endpoint = cluster.Pick(nowTicks, exclude, out var panic);
        if (panic)
        {
            Metrics.PanicPicks.WithLabels(cluster.Name).Inc();
        }

        return endpoint;
    }

    /// <summary>Records a passive failure against an endpoint and logs an ejection.</summary>
    public void ReportPassiveFailure(ClusterState cluster, EndpointState endpoint, bool isConnectFailure)
    {
        var policy = cluster.Config.PassiveHealth;
        if (endpoint.PassiveFailure(isConnectFailure, policy, TimeProvider.GetTimestamp()))
        {
            RelayLog.EndpointEjected(_logger, endpoint.Id, cluster.Name, policy.EjectionTime.TotalSeconds, policy.FailureThreshold);
            Metrics.HealthTransitions.WithLabels(cluster.Name, endpoint.Id, "ejected").Inc();
        }
    }

    private static RuntimeSnapshot Build(RelayConfig config, ImmutableDictionary<string, ClusterState> previous)
    {
        var clusters = ImmutableDictionary.CreateBuilder<string, ClusterState>(StringComparer.Ordinal);
        foreach (var cluster in config.Clusters.Values)
        {
            previous.TryGetValue(cluster.Name, out var old);
            var endpoints = ImmutableArray.CreateBuilder<EndpointState>(cluster.Endpoints.Count);
            foreach (var endpointConfig in cluster.Endpoints.Values.OrderBy(e => e.Id, StringComparer.Ordinal))
            {
                var existing = old?.Endpoints.FirstOrDefault(e => e.Id == endpointConfig.Id);
                if (existing is not null && existing.Config.Address.Equals(endpointConfig.Address))
                {
                    existing.Config = endpointConfig;
                    endpoints.Add(existing);
                }
                else
                {
                    endpoints.Add(new EndpointState(cluster.Name, endpointConfig));
                }
            }

            clusters[cluster.Name] = new ClusterState(cluster, endpoints.ToImmutable());
        }

        return new RuntimeSnapshot(config, clusters.ToImmutable());
    }

    private static readonly string[] s_generationNames = ["gen0", "gen1", "gen2", "loh", "poh"];

    /// <summary>How many sockets the L4 epoll reactors hold now; set by the host that owns them.</summary>
    internal Func<int>? ReactorSockets { get; set; }

    private void UpdateGauges()
    {
        var gc = GC.GetGCMemoryInfo();
        Metrics.GcMemory.WithLabels("heap").Set(gc.HeapSizeBytes);
        Metrics.GcMemory.WithLabels("fragmented").Set(gc.FragmentedBytes);
        Metrics.GcMemory.WithLabels("committed").Set(gc.TotalCommittedBytes);
        var generations = gc.GenerationInfo;
        for (var i = 0; i < generations.Length && i < s_generationNames.Length; i++)
        {
            Metrics.GcMemory.WithLabels(s_generationNames[i]).Set(generations[i].SizeAfterBytes);
        }

        Metrics.GcPause.IncTo(GC.GetTotalPauseDuration().TotalSeconds);
        Metrics.ReactorSockets.Set(ReactorSockets?.Invoke() ?? 0);
        Metrics.GcAllocated.IncTo(GC.GetTotalAllocatedBytes(precise: true));
        var now = TimeProvider.GetTimestamp();
        foreach (var cluster in Snapshot.Clusters.Values)
        {
            foreach (var endpoint in cluster.Endpoints)
            {
                Metrics.EndpointHealthy.WithLabels(cluster.Name, endpoint.Id).Set(endpoint.IsAvailable(now) ? 1 : 0);
                Metrics.EndpointSessions.WithLabels(cluster.Name, endpoint.Id).Set(endpoint.ActiveSessions);
            }
        }

        // Bytes: closed sessions were added when they ended; add the live ones' progress now.
        var live = new Dictionary<string, (long In, long Out)>(StringComparer.Ordinal);
        foreach (var (_, session) in Sessions)
        {
            live.TryGetValue(session.RouteName, out var sums);
            var (bytesIn, bytesOut) = session.TakeUnreportedBytes();
            live[session.RouteName] = (sums.In + bytesIn, sums.Out + bytesOut);
        }

        foreach (var (route, (bytesIn, bytesOut)) in live)
        {
            Metrics.Bytes.WithLabels(route, "in").Inc(bytesIn);
            Metrics.Bytes.WithLabels(route, "out").Inc(bytesOut);
        }
    }
}

public sealed record RuntimeSnapshot(RelayConfig Config, ImmutableDictionary<string, ClusterState> Clusters);
