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
    /// When no endpoint is available only because passive health ejected them all, it picks among
    /// those (<paramref name="panic"/> true), as Envoy's panic threshold does: passive ejection is a
    /// guess from resets and failed connects that steers sessions to other endpoints, and with none
    /// left, trying one is better than refusing every client. Probes, drains and removals still refuse.
    /// </summary>
    public EndpointState? Pick(long nowTicks, ReadOnlySpan<EndpointState?> exclude, out bool panic)
    {
        var endpoints = Endpoints;
        Span<int> candidates = endpoints.Length <= 64 ? stackalloc int[endpoints.Length] : new int[endpoints.Length];
        var count = Candidates(nowTicks, exclude, candidates, ejected: false);
        panic = count == 0 && (count = Candidates(nowTicks, exclude, candidates, ejected: true)) > 0;
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

    private int Candidates(long nowTicks, ReadOnlySpan<EndpointState?> exclude, Span<int> candidates, bool ejected)
    {
        var endpoints = Endpoints;
        var count = 0;
        for (var i = 0; i < endpoints.Length; i++)
        {
            var endpoint = endpoints[i];
            if ((ejected ? endpoint.IsOnlyEjected(nowTicks) : endpoint.IsAvailable(nowTicks)) && !Contains(exclude, endpoint))
            {
                candidates[count++] = i;
            }
        }

        return count;
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
