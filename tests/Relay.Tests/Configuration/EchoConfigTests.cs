using Relay.Configuration;

namespace Relay.Tests.Configuration;

public sealed class EchoConfigTests
{
    private const string Template = """
        {
          "echo": { "pskFile": "/run/relay/echo.psk", "paths": ["127.0.0.1", "127.0.0.2"] },
          "routes": { "r": { "listen": "127.0.0.1:7000", "cluster": "c", "echo": POLICY } },
          "clusters": { "c": { "endpoints": {
            "a": { "address": "127.0.0.1:7101", "agent": "127.0.0.1:7201" },
            "b": { "address": "127.0.0.1:7102", "agent": "127.0.0.1:7202" } } } }
        }
        """;

    private static ConfigResult Parse(string policy) => ConfigLoader.Parse(Template.Replace("POLICY", policy, StringComparison.Ordinal));

    [Fact]
    public void APolicyParsesWithItsDefaults()
    {
        var result = Parse("""{ "codec": "resp", "shadows": 2, "interval": "10ms", "retention": "8MiB", "uncomparedResponses": 1, "stateScope": "connection" }""");
        Assert.True(result.IsValid, string.Join("; ", result.Errors));
        var config = result.Config!;
        var policy = config.Routes["r"].Echo!;
        Assert.Equal((EchoCodec.Resp, 2, TimeSpan.FromMilliseconds(10), 8L << 20, 1, EchoStateScope.Connection), (policy.Codec, policy.Shadows, policy.Interval, policy.RetentionBytes, policy.UncomparedResponses, policy.StateScope));
        Assert.Equal((65536L, TimeSpan.FromSeconds(3), true, 1, true), (policy.MaxLagBytes, policy.AckTimeout, policy.ZoneDiversity, policy.RedundancyFloor, policy.Failover));
        Assert.Null(policy.MaxOutputLag);
        Assert.Equal(16L, Parse("""{ "codec": "lines", "maxOutputLag": 16 }""").Config!.Routes["r"].Echo!.MaxOutputLag);
        Assert.Equal("/run/relay/echo.psk", config.Echo.PskFile);
        Assert.Equal(2, config.Echo.Paths.Length);
        Assert.Equal(Relay.Transport.Multipath.PathLossParity.AfterPathFailure, config.Echo.PathLossParity);
        Assert.Equal(7202, config.Clusters["c"].Endpoints["b"].Agent!.Port);
        Assert.Equal(ConfigValidator.MaxEchoMessageBytes(config.Tuning), ConfigValidator.EffectiveMaxMessageBytes(policy, config.Tuning));
    }

    [Fact]
    public void PathLossParity_ParsesEachChoice_AndNamesTheKeyWhenWrong()
    {
        foreach (var (text, expected) in new[] { ("always", Relay.Transport.Multipath.PathLossParity.Always), ("never", Relay.Transport.Multipath.PathLossParity.Never), ("afterPathFailure", Relay.Transport.Multipath.PathLossParity.AfterPathFailure) })
        {
            var result = ConfigLoader.Parse(Template.Replace("POLICY", "{}", StringComparison.Ordinal).Replace("\"paths\"", $"\"pathLossParity\": \"{text}\", \"paths\"", StringComparison.Ordinal));
            Assert.True(result.IsValid, string.Join("; ", result.Errors));
            Assert.Equal(expected, result.Config!.Echo.PathLossParity);
        }

        var wrong = ConfigLoader.Parse(Template.Replace("POLICY", "{}", StringComparison.Ordinal).Replace("\"paths\"", "\"pathLossParity\": \"sometimes\", \"paths\"", StringComparison.Ordinal));
        Assert.Contains("echo.pathLossParity: \"sometimes\" is not one of \"afterPathFailure\", \"always\", \"never\"", string.Join("\n", wrong.Errors), StringComparison.Ordinal);
    }

    [Fact]
    public void EveryEchoProblemNamesItsKey()
    {
        var result = Parse("""{ "codec": "xml", "shadows": 9, "interval": "2m", "retention": "lots", "ackTimeout": "500ms", "maxMessageBytes": 1048576, "stateScope": "global", "redundancyFloor": -1, "maxOutputLag": -5, "sahdows": 1 }""");
        Assert.False(result.IsValid);
        var errors = string.Join("\n", result.Errors);
        foreach (var key in new[] { "routes.r.echo.codec", "routes.r.echo.shadows", "routes.r.echo.interval", "routes.r.echo.retention", "routes.r.echo.stateScope", "routes.r.echo.redundancyFloor", "routes.r.echo.maxOutputLag", "routes.r.echo.sahdows" })
        {
            Assert.Contains(key, errors, StringComparison.Ordinal);
        }

        var timing = Parse("""{ "codec": "lines", "interval": "5s", "ackTimeout": "2s", "maxMessageBytes": 1048576 }""");
        var timingErrors = string.Join("\n", timing.Errors);
        Assert.Contains("routes.r.echo.ackTimeout: 2s must be longer than interval (5s)", timingErrors, StringComparison.Ordinal);
        Assert.Contains("routes.r.echo.maxMessageBytes: 1048576 is more than the", timingErrors, StringComparison.Ordinal);
    }

    [Fact]
    public void EchoNeedsAnAgentAndATcpRoute()
    {
        var noAgent = ConfigLoader.Parse(Template.Replace("POLICY", "{ \"shadows\": 1 }", StringComparison.Ordinal).Replace(", \"agent\": \"127.0.0.1:7201\"", "", StringComparison.Ordinal).Replace(", \"agent\": \"127.0.0.1:7202\"", "", StringComparison.Ordinal));
        Assert.Contains(noAgent.Errors, e => e.StartsWith("routes.r.echo.shadows: cluster \"c\" has no endpoint with an \"agent\"", StringComparison.Ordinal));

        var http = ConfigLoader.Parse(Template.Replace("POLICY", "{ }", StringComparison.Ordinal).Replace("\"cluster\": \"c\",", "\"cluster\": \"c\", \"protocol\": \"http\",", StringComparison.Ordinal));
        Assert.Contains(http.Errors, e => e.StartsWith("routes.r.echo: only a TCP route is echoed", StringComparison.Ordinal));

        var (policy, errors) = ConfigLoader.ParseEchoPolicy("""{ "codec": "lines", "shadows": "two" }""", "policy");
        Assert.Null(policy);
        Assert.Contains(errors, e => e.StartsWith("policy.shadows:", StringComparison.Ordinal));
    }

    [Fact]
    public void AMissingOrShortKeyIsAClearError()
    {
        var missing = global::Relay.Echo.Splice.EchoManager.LoadPsk(new EchoConfig { PskEnvironmentVariable = "RELAY_TEST_NO_SUCH_VARIABLE" }, out var problem);
        Assert.Null(missing);
        Assert.StartsWith("echo.pskFile: a route echoes its sessions but no pre-shared key is set", problem, StringComparison.Ordinal);

        var file = Path.GetTempFileName();
        try
        {
            File.WriteAllText(file, "short\n");
            Assert.Null(global::Relay.Echo.Splice.EchoManager.LoadPsk(new EchoConfig { PskFile = file }, out problem));
            Assert.Contains("the pre-shared key has 5 bytes; it needs at least 32", problem, StringComparison.Ordinal);
            File.WriteAllText(file, new string('k', 40) + "\n");
            Assert.Equal(40, global::Relay.Echo.Splice.EchoManager.LoadPsk(new EchoConfig { PskFile = file }, out problem)!.Length);
        }
        finally
        {
            File.Delete(file);
        }
    }
}
