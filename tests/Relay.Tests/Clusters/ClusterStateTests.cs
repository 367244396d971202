using System.Collections.Immutable;
using System.Net;
using Relay.Clusters;
using Relay.Configuration;

namespace Relay.Tests.Clusters;

public class ClusterStateTests
{
    private static ClusterState Cluster(LoadBalancingPolicy policy, int count, out EndpointState[] endpoints)
    {
        var config = new ClusterConfig
        {
            Name = "c",
            LoadBalancing = policy,
            Endpoints = Enumerable.Range(0, count).ToImmutableDictionary(i => $"e{i}", i => new EndpointConfig { Id = $"e{i}", Address = new DnsEndPoint("127.0.0.1", 1000 + i) }),
        };
        endpoints = [.. config.Endpoints.Values.OrderBy(e => e.Id, StringComparer.Ordinal).Select(e => new EndpointState("c", e))];
        return new ClusterState(config, [.. endpoints]);
    }

    [Fact]
    public void PowerOfTwoChoices_NeverPicksTheBusierOfTwo()
    {
        var cluster = Cluster(LoadBalancingPolicy.PowerOfTwoChoices, 2, out var endpoints);
        for (var i = 0; i < 5; i++)
        {
            endpoints[0].SessionStarted();
        }

        for (var i = 0; i < 100; i++)
        {
            Assert.Same(endpoints[1], cluster.Pick(0, [], out var _));
        }
    }

    [Fact]
    public void PowerOfTwoChoices_SpreadsLoadEvenly()
    {
        var cluster = Cluster(LoadBalancingPolicy.PowerOfTwoChoices, 4, out var endpoints);
        for (var i = 0; i < 400; i++)
        {
            cluster.Pick(0, [], out var _)!.SessionStarted();
        }

        // With P2C the max load stays within a couple of sessions of the mean (100).
        Assert.All(endpoints, e => Assert.InRange(e.ActiveSessions, 95, 105));
    }

    [Fact]
    public void RoundRobin_Cycles_AndSkipsExcluded()
    {
        var cluster = Cluster(LoadBalancingPolicy.RoundRobin, 3, out var endpoints);
        var picks = Enumerable.Range(0, 6).Select(_ => cluster.Pick(0, [], out var _)!.Id).ToArray();
        Assert.Equal(2, picks.Count(p => p == "e0"));
        Assert.Equal(2, picks.Count(p => p == "e1"));
        Assert.Equal(2, picks.Count(p => p == "e2"));
        Assert.All(Enumerable.Range(0, 10), _ => Assert.NotSame(endpoints[1], cluster.Pick(0, [endpoints[1]], out var _)));
    }

    [Fact]
    public void UnavailableEndpoints_AreNeverPicked_AndNoneLeftGivesNull()
    {
        var cluster = Cluster(LoadBalancingPolicy.PowerOfTwoChoices, 3, out var endpoints);
        var policy = new ActiveHealthConfig { UnhealthyThreshold = 1 };
        endpoints[0].ProbeResult(false, "down", policy, DateTimeOffset.UnixEpoch);
        endpoints[2].Removed = true;
        Assert.All(Enumerable.Range(0, 50), _ => Assert.Same(endpoints[1], cluster.Pick(0, [], out var _)));
        Assert.Null(cluster.Pick(0, [endpoints[1]], out var _));
    }

    [Fact]
    public void EjectedEndpoints_AreAvoided_UntilAllAreEjected_ThenPickedAsAPanic()
    {
        var cluster = Cluster(LoadBalancingPolicy.PowerOfTwoChoices, 3, out var endpoints);
        var passive = new PassiveHealthConfig { FailureThreshold = 1, EjectionTime = TimeSpan.FromMinutes(1) };
        Assert.True(endpoints[0].PassiveFailure(false, passive, 0));
        Assert.All(Enumerable.Range(0, 50), _ =>
        {
            Assert.NotSame(endpoints[0], cluster.Pick(0, [], out var panic));
            Assert.False(panic);
        });

        // The last two go: one drained (never picked, even now), one ejected; every pick is a panic among the ejected.
        endpoints[1].Draining = true;
        Assert.True(endpoints[2].PassiveFailure(true, passive, 0));
        var picks = Enumerable.Range(0, 50).Select(_ => (Endpoint: cluster.Pick(0, [], out var panic), Panic: panic)).ToArray();
        Assert.All(picks, p => Assert.True(p.Panic));
        Assert.Contains(picks, p => ReferenceEquals(p.Endpoint, endpoints[0]));
        Assert.Contains(picks, p => ReferenceEquals(p.Endpoint, endpoints[2]));
        Assert.DoesNotContain(picks, p => ReferenceEquals(p.Endpoint, endpoints[1]));

        // A probe failure refuses as before: an actively unhealthy endpoint is not a panic candidate.
        endpoints[0].ProbeResult(false, "down", new ActiveHealthConfig { UnhealthyThreshold = 1 }, DateTimeOffset.UnixEpoch);
        Assert.All(Enumerable.Range(0, 20), _ => Assert.Same(endpoints[2], cluster.Pick(0, [], out var _)));
        Assert.Null(cluster.Pick(0, [endpoints[2]], out var none));
        Assert.False(none);
    }

    [Fact]
    public void ProbeThresholds_NeedConsecutiveResults()
    {
        var endpoint = new EndpointState("c", new EndpointConfig { Id = "e", Address = new DnsEndPoint("127.0.0.1", 1) });
        var policy = new ActiveHealthConfig { HealthyThreshold = 2, UnhealthyThreshold = 3 };
        Assert.Null(endpoint.ProbeResult(false, "x", policy, default));
        Assert.Null(endpoint.ProbeResult(false, "x", policy, default));
        Assert.Null(endpoint.ProbeResult(true, null, policy, default));
        Assert.Null(endpoint.ProbeResult(false, "x", policy, default));
        Assert.Null(endpoint.ProbeResult(false, "x", policy, default));
        Assert.False(endpoint.ProbeResult(false, "x", policy, default));
        Assert.False(endpoint.ActiveHealthy);
        Assert.Null(endpoint.ProbeResult(true, null, policy, default));
        Assert.True(endpoint.ProbeResult(true, null, policy, default));
    }

    [Fact]
    public void PassiveFailures_EjectForTheEjectionTime_ThenReadmit()
    {
        var endpoint = new EndpointState("c", new EndpointConfig { Id = "e", Address = new DnsEndPoint("127.0.0.1", 1) });
        var policy = new PassiveHealthConfig { FailureThreshold = 2, EjectionTime = TimeSpan.FromSeconds(10) };
        var second = (long)TimeProviderTicks.PerSecond;
        Assert.False(endpoint.PassiveFailure(true, policy, 0));
        endpoint.ConnectSucceeded();
        Assert.False(endpoint.PassiveFailure(true, policy, 0));
        Assert.True(endpoint.PassiveFailure(false, policy, 0));
        Assert.False(endpoint.IsAvailable(9 * second));
        Assert.True(endpoint.IsAvailable(11 * second));
        Assert.Equal(2, endpoint.ConnectFailures);
        Assert.Equal(1, endpoint.Resets);
    }
}
