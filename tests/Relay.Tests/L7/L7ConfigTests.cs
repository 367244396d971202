using Relay.Configuration;

namespace Relay.Tests.L7;

public class L7ConfigTests
{
    private static string Config(string route, string extraEndpoints = "") => $$"""
        {
          "routes": { "web": { "listen": "127.0.0.1:0", "cluster": "c" {{route}} } },
          "clusters": { "c": { "endpoints": { "e1": { "address": "127.0.0.1:9000" } {{extraEndpoints}} } } }
        }
        """;

    [Fact]
    public void HttpRoute_WithEveryKey_Loads()
    {
        var result = ConfigLoader.Parse(Config("""
            , "protocol": "http",
            "affinity": { "mode": "header", "name": "X-Session", "idleTimeout": "10m", "maxSessions": 50 },
            "mirror": { "shadows": ["e2"], "percent": 12.5, "methods": "nonIdempotent", "maxBodyBytes": 1000, "header": "X-Shadow",
                        "queueLength": 8, "concurrency": 2,
                        "compare": { "ignoreHeaders": ["Date"], "ignoreJsonFields": ["id", "ts"], "window": 20, "minSamples": 5, "maxMismatchPercent": 10 } },
            "retries": { "attempts": 4, "backoff": "1ms", "maxBackoff": "20ms", "budgetPercent": 50, "minBudget": 3 },
            "idempotencyKeyHeader": "Idempotency-Key", "requestTimeout": "5s", "maxRetryBodyBytes": 2048
            """, """, "e2": { "address": "127.0.0.1:9001" }"""));
        Assert.True(result.IsValid, string.Join("; ", result.Errors));
        var route = result.Config!.Routes["web"];
        Assert.Equal(RouteProtocol.Http, route.Protocol);
        var http = route.Http!;
        Assert.Equal(AffinityMode.Header, http.Affinity!.Mode);
        Assert.Equal("X-Session", http.Affinity.Name);
        Assert.Equal(50, http.Affinity.MaxSessions);
        Assert.Equal(["e2"], http.Mirror!.Shadows);
        Assert.Equal(12.5, http.Mirror.Percent);
        Assert.Equal(MirrorMethods.NonIdempotent, http.Mirror.Methods);
        Assert.Equal(["id", "ts"], http.Mirror.Compare.IgnoreJsonFields);
        Assert.Equal(10, http.Mirror.Compare.MaxMismatchPercent);
        Assert.Equal(4, http.Retries.Attempts);
        Assert.Equal(TimeSpan.FromMilliseconds(20), http.Retries.MaxBackoff);
        Assert.Equal("Idempotency-Key", http.IdempotencyKeyHeader);
        Assert.Equal(TimeSpan.FromSeconds(5), http.RequestTimeout);
        Assert.Equal(2048, http.MaxRetryBodyBytes);
    }

    [Fact]
    public void HttpRoute_Defaults_AreDocumentedOnes()
    {
        var result = ConfigLoader.Parse(Config(""", "protocol": "http", "affinity": {} """));
        Assert.True(result.IsValid, string.Join("; ", result.Errors));
        var http = result.Config!.Routes["web"].Http!;
        Assert.Equal(AffinityMode.Cookie, http.Affinity!.Mode);
        Assert.Equal(RelayDefaults.AffinityCookieName, http.Affinity.Name);
        Assert.Null(http.Mirror);
        Assert.Equal(3, http.Retries.Attempts);
        Assert.Null(http.IdempotencyKeyHeader);
    }

    [Fact]
    public void TcpRoute_WithHttpKeys_NamesEveryKey()
    {
        var result = ConfigLoader.Parse(Config(""", "affinity": {}, "retries": {}, "idempotencyKeyHeader": "K" """));
        Assert.False(result.IsValid);
        Assert.Contains("routes.web.affinity: only an HTTP route has this key; add \"protocol\": \"http\" or remove it", result.Errors);
        Assert.Contains(result.Errors, e => e.StartsWith("routes.web.retries: only an HTTP route", StringComparison.Ordinal));
        Assert.Contains(result.Errors, e => e.StartsWith("routes.web.idempotencyKeyHeader: only an HTTP route", StringComparison.Ordinal));
    }

    [Fact]
    public void BadHttpKeys_AreAllReportedAtOnce_WithTheirKeys()
    {
        var result = ConfigLoader.Parse(Config("""
            , "protocol": "htp",
            "affinity": { "mode": "url", "name": "bad name" },
            "mirror": { "shadows": ["ghost", "ghost"], "percent": 150, "methods": "some", "compare": { "window": 5, "minSamples": 6, "colour": 1 } },
            "retries": { "attempts": 0, "backoff": "50ms", "maxBackoff": "10ms" },
            "idempotencyKeyHeader": ""
            """));
        Assert.False(result.IsValid);
        string[] expected =
        [
            "routes.web.protocol: \"htp\" is not one of \"tcp\", \"http\"",
        ];
        Assert.Equal(expected, result.Errors.Where(e => e.StartsWith("routes.web.protocol", StringComparison.Ordinal)));
    }

    [Fact]
    public void BadHttpKeys_OnAnHttpRoute_AreAllReportedAtOnce()
    {
        var result = ConfigLoader.Parse(Config("""
            , "protocol": "http",
            "affinity": { "mode": "url", "name": "bad name" },
            "mirror": { "shadows": ["ghost", "ghost"], "percent": 150, "methods": "some", "compare": { "window": 5, "minSamples": 6, "colour": 1 } },
            "retries": { "attempts": 0, "backoff": "50ms", "maxBackoff": "10ms" },
            "idempotencyKeyHeader": ""
            """));
        Assert.False(result.IsValid);
        var errors = result.Errors;
        Assert.Contains("routes.web.affinity.mode: \"url\" is not one of \"cookie\", \"header\"", errors);
        Assert.Contains(errors, e => e.StartsWith("routes.web.affinity.name: \"bad name\" is not a valid header or cookie name", StringComparison.Ordinal));
        Assert.Contains("routes.web.mirror.shadows[1]: \"ghost\" is listed twice", errors);
        Assert.Contains("routes.web.mirror.percent: 150 is out of range (0 to 100)", errors);
        Assert.Contains("routes.web.mirror.methods: \"some\" is not one of \"all\", \"nonIdempotent\"", errors);
        Assert.Contains("routes.web.mirror.compare.minSamples: 6 is more than window (5)", errors);
        Assert.Contains(errors, e => e.StartsWith("routes.web.mirror.compare.colour: unknown key", StringComparison.Ordinal));
        Assert.Contains("routes.web.retries.attempts: 0 is out of range (1 to 10)", errors);
        Assert.Contains("routes.web.retries.maxBackoff: 10ms is shorter than backoff (50ms)", errors);
        Assert.Contains(errors, e => e.StartsWith("routes.web.idempotencyKeyHeader: expected a non-empty string", StringComparison.Ordinal));
    }

    [Fact]
    public void MirrorShadow_ThatIsNoEndpoint_IsNamed()
    {
        var result = ConfigLoader.Parse(Config(""", "protocol": "http", "mirror": { "shadows": ["e1", "ghost"] } """));
        Assert.Equal(["routes.web.mirror.shadows[1]: endpoint \"ghost\" is not defined in any cluster"], result.Errors);
    }

    [Fact]
    public void MirrorWithoutShadows_IsAnError()
    {
        var result = ConfigLoader.Parse(Config(""", "protocol": "http", "mirror": { "percent": 10 } """));
        Assert.Equal(["routes.web.mirror.shadows: required (a list of endpoint ids that receive the copies)"], result.Errors);
    }
}
