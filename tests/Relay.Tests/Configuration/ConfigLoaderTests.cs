using Relay.Configuration;

namespace Relay.Tests.Configuration;

public class ConfigLoaderTests
{
    private const string Minimal = """
        {
          "routes": { "r": { "listen": "127.0.0.1:7000", "cluster": "c" } },
          "clusters": { "c": { "endpoints": { "e": { "address": "127.0.0.1:7100" } } } }
        }
        """;

    [Fact]
    public void MinimalConfig_LoadsWithDocumentedDefaults()
    {
        var result = ConfigLoader.Parse(Minimal);
        Assert.True(result.IsValid, string.Join("; ", result.Errors));
        var config = result.Config!;
        var route = config.Routes["r"];
        Assert.Equal(RelayDefaults.MaxSessionsPerRoute, route.MaxSessions);
        Assert.Equal(TimeSpan.FromMinutes(5), route.IdleTimeout);
        var cluster = config.Clusters["c"];
        Assert.Equal(LoadBalancingPolicy.PowerOfTwoChoices, cluster.LoadBalancing);
        Assert.Equal(TimeSpan.FromSeconds(3), cluster.ConnectTimeout);
        Assert.Equal(ProxyProtocolMode.None, cluster.ProxyProtocol);
        Assert.True(cluster.ActiveHealth.Enabled);
        Assert.Equal("127.0.0.1", cluster.Endpoints["e"].Address.Host);
        Assert.Equal(9901, config.Admin.Listen!.Port);
        Assert.Equal(65536, config.Tuning.BlockBytes);
        Assert.True(config.Tuning.Epoll);
        Assert.Equal(0, config.Tuning.EpollReactors);
    }

    [Fact]
    public void EpollTuning_IsRead_AndBadValuesNameTheirKey()
    {
        var off = ConfigLoader.Parse(Minimal.Insert(1, """ "tuning": { "epoll": false, "epollReactors": 3 }, """));
        Assert.True(off.IsValid, string.Join("; ", off.Errors));
        Assert.False(off.Config!.Tuning.Epoll);
        Assert.Equal(3, off.Config.Tuning.EpollReactors);

        var bad = ConfigLoader.Parse(Minimal.Insert(1, """ "tuning": { "epoll": "yes", "epollReactors": 99 }, """));
        Assert.Contains("tuning.epoll: expected true or false, found \"yes\"", bad.Errors);
        Assert.Contains("tuning.epollReactors: 99 is out of range (0 to 64)", bad.Errors);
    }

    [Fact]
    public void CommentsAndTrailingCommas_AreAccepted()
    {
        var result = ConfigLoader.Parse("// top\n" + Minimal.Replace("\"c\" } },", "\"c\", /* x */ } },", StringComparison.Ordinal));
        Assert.True(result.IsValid, string.Join("; ", result.Errors));
    }

    [Fact]
    public void EveryProblem_IsReportedAtOnce_WithItsKey()
    {
        var result = ConfigLoader.Parse("""
            {
              "admin": { "listen": "nowhere" },
              "routes": {
                "a": { "cluster": "c", "maxSessions": -1 },
                "b": { "listen": "127.0.0.1:7001", "cluster": 5, "idleTimeout": "soon" }
              },
              "clusters": { "c": { "connectAttempts": 0, "proxyProtocol": "v9", "endpoints": { "e": { "address": "[::1]" } } } },
              "extra": true
            }
            """);
        Assert.False(result.IsValid);
        Assert.Contains("admin.listen: \"nowhere\" is not host:port (for example \"127.0.0.1:7000\" or \"[::1]:7000\")", result.Errors);
        Assert.Contains("routes.a.listen: required (an address such as \"127.0.0.1:7000\")", result.Errors);
        Assert.Contains("routes.a.maxSessions: -1 is out of range (0 to 2147483647)", result.Errors);
        Assert.Contains("routes.b.cluster: expected a non-empty string, found 5", result.Errors);
        Assert.Contains("routes.b.idleTimeout: expected a duration such as \"500ms\", \"2s\", \"5m\" or \"1h\", found \"soon\"", result.Errors);
        Assert.Contains("clusters.c.connectAttempts: 0 is out of range (1 to 100)", result.Errors);
        Assert.Contains("clusters.c.proxyProtocol: \"v9\" is not one of \"none\", \"v2\"", result.Errors);
        Assert.Contains(result.Errors, e => e.StartsWith("clusters.c.endpoints.e.address: ", StringComparison.Ordinal));
        Assert.Contains(result.Errors, e => e.StartsWith("extra: unknown key", StringComparison.Ordinal));
    }

    [Fact]
    public void NotJson_SaysWhere()
    {
        var result = ConfigLoader.Parse("{ \"routes\": { ", "relay.json");
        var error = Assert.Single(result.Errors);
        Assert.StartsWith("relay.json: not valid JSON at line 1", error, StringComparison.Ordinal);
    }

    [Fact]
    public void MisspelledKey_GetsASuggestion()
    {
        var result = ConfigLoader.Parse(Minimal.Replace("\"cluster\": \"c\"", "\"cluster\": \"c\", \"idleTimout\": \"1s\"", StringComparison.Ordinal));
        Assert.Contains("routes.r.idleTimout: unknown key (did you mean \"idleTimeout\"?)", result.Errors);
    }

    [Fact]
    public void Contradictions_AreErrors()
    {
        var result = ConfigLoader.Parse("""
            {
              "admin": { "listen": "127.0.0.1:7000" },
              "routes": {
                "a": { "listen": "127.0.0.1:7000", "cluster": "c", "maxSessions": 2, "maxSessionsPerClient": 5 },
                "b": { "listen": "127.0.0.1:7000", "cluster": "empty" }
              },
              "clusters": {
                "c": { "endpoints": { "e": { "address": "127.0.0.1:1" }, "f": { "address": "127.0.0.1:1" } } },
                "empty": { "endpoints": { } },
                "d": { "endpoints": { "e": { "address": "127.0.0.1:2" } } }
              }
            }
            """);
        Assert.Contains("routes.a.listen: 127.0.0.1:7000 is also admin.listen", result.Errors);
        Assert.Contains("routes.a.maxSessionsPerClient: 5 is more than maxSessions (2)", result.Errors);
        Assert.Contains("routes.b.listen: 127.0.0.1:7000 is already the listen address of routes.a", result.Errors);
        Assert.Contains("routes.b.cluster: cluster \"empty\" has no endpoints", result.Errors);
        Assert.Contains("clusters.c.endpoints.f.address: 127.0.0.1:1 is also the address of clusters.c.endpoints.e", result.Errors);
        Assert.Contains("clusters.d.endpoints.e: endpoint id \"e\" is also used in clusters.c; endpoint ids must be unique", result.Errors);
    }

    [Fact]
    public void NoRoutes_IsAnError()
    {
        var result = ConfigLoader.Parse("{ }");
        Assert.Contains("routes: at least one route is required", result.Errors);
    }

    [Theory]
    [InlineData("500ms", 500)]
    [InlineData("2s", 2000)]
    [InlineData("1.5s", 1500)]
    [InlineData("5m", 300_000)]
    [InlineData("1h", 3_600_000)]
    [InlineData("0s", 0)]
    public void Durations_Parse(string text, double milliseconds)
    {
        Assert.True(DurationParser.TryParse(text, out var duration));
        Assert.Equal(milliseconds, duration.TotalMilliseconds);
    }

    [Theory]
    [InlineData("")]
    [InlineData("5")]
    [InlineData("5 minutes")]
    [InlineData("s")]
    [InlineData("NaNs")]
    [InlineData("1e300h")]
    public void BadDurations_AreRefused(string text) => Assert.False(DurationParser.TryParse(text, out _));

    [Theory]
    [InlineData("127.0.0.1:7000", "127.0.0.1", 7000)]
    [InlineData("[::1]:7000", "::1", 7000)]
    [InlineData("localhost:80", "127.0.0.1", 80)]
    [InlineData("*:8080", "0.0.0.0", 8080)]
    public void ListenAddresses_Parse(string text, string address, int port)
    {
        Assert.True(AddressParser.TryParseListen(text, out var endPoint, out var problem), problem);
        Assert.Equal(address, endPoint.Address.ToString());
        Assert.Equal(port, endPoint.Port);
    }

    [Theory]
    [InlineData("::1:7000", "put an IPv6 address in brackets")]
    [InlineData("example.com:80", "needs an IP literal")]
    [InlineData("127.0.0.1:http", "the port must be a number")]
    [InlineData("127.0.0.1", "is not host:port")]
    public void BadListenAddresses_SayWhy(string text, string why)
    {
        Assert.False(AddressParser.TryParseListen(text, out _, out var problem));
        Assert.Contains(why, problem, StringComparison.Ordinal);
    }

    [Fact]
    public void UpstreamPortZero_IsRefused()
    {
        Assert.False(AddressParser.TryParseUpstream("127.0.0.1:0", out _, out var problem));
        Assert.Contains("from 1 to 65535", problem, StringComparison.Ordinal);
        Assert.True(AddressParser.TryParseUpstream("redis.internal:6379", out var endPoint, out _));
        Assert.Equal("redis.internal", endPoint.Host);
    }
}
