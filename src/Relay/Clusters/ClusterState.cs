using System.Collections.Immutable;
using Relay.Configuration;

namespace Relay.Clusters;

/// <summary>A cluster's config and its endpoints, as one immutable snapshot replaced on reload.</summary>
public sealed class ClusterState
{
    private int _roundRobin = -1;

    public ClusterState(ClusterConfig config, ImmutableArray<EndpointState> endpoints)
    {
        Config = config;
        Endpoints = endpoints;
    }

    public ClusterConfig Config { get; }

    public string Name => Config.Name;

    public ImmutableArray<EndpointState> Endpoints { get; }

    /// <summary>
    /// Picks an available endpoint not in <paramref name="exclude"/>, by the cluster's policy.
    /// Power of two choices compares the active sessions of two random candidates (Mitzenmacher);
    /// it needs no shared counter and avoids the herd that least-connections makes after a reload.
    /// </summary>
    public EndpointState? Pick(long nowTicks, ReadOnlySpan<EndpointState?> exclude)
    {
        var endpoints = Endpoints;
        Span<int> candidates = endpoints.Length <= 64 ? stackalloc int[endpoints.Length] : new int[endpoints.Length];
        var count = 0;
        for (var i = 0; i < endpoints.Length; i++)
        {
            var endpoint = endpoints[i];
            if (endpoint.IsAvailable(nowTicks) && !Contains(exclude, endpoint))
            {
                candidates[count++] = i;
            }
        }

        if (count == 0)
        {
            return null;
        }

        if (count == 1)
        {
            return endpoints[candidates[0]];
        }

        if (Config.LoadBalancing == LoadBalancingPolicy.RoundRobin)
        {
            var next = (uint)Interlocked.Increment(ref _roundRobin);
            return endpoints[candidates[(int)(next % (uint)count)]];
        }

        var first = Random.Shared.Next(count);
        var second = Random.Shared.Next(count - 1);
        if (second >= first)
        {
            second++;
        }

        var a = endpoints[candidates[first]];
        var b = endpoints[candidates[second]];
        return b.ActiveSessions < a.ActiveSessions ? b : a;
    }

    private static bool Contains(ReadOnlySpan<EndpointState?> set, EndpointState endpoint)
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
}
