using Relay.Configuration;

namespace Relay.Tests.Configuration;

public class CommandLineTests
{
    [Fact]
    public void RouteFlags_BuildRoutesAndClusters()
    {
        Assert.True(CommandLine.TryParse(["--route", "127.0.0.1:7000=127.0.0.1:6379,127.0.0.1:6380", "-r", "[::1]:7001=localhost:9000", "--admin", "off"], out var command, out var error), error);
        Assert.True(RelayProgram.TryBuildConfig(command, out var config, out var errors), string.Join("; ", errors));
        Assert.Equal(2, config.Routes.Count);
        Assert.Equal(["route1-1", "route1-2"], config.Clusters["route1"].Endpoints.Keys.Order(StringComparer.Ordinal));
        Assert.Equal(7001, config.Routes["route2"].Listen.Port);
        Assert.Null(config.Admin.Listen);
    }

    [Theory]
    [InlineData(new[] { "--bogus" }, "unknown argument \"--bogus\"")]
    [InlineData(new[] { "--config" }, "--config needs a value")]
    [InlineData(new[] { "--drain-timeout", "forever" }, "--drain-timeout: \"forever\" is not a duration such as 30s")]
    [InlineData(new[] { "--log-level", "loud" }, "--log-level: \"loud\" is not one of")]
    public void BadFlags_SayWhatIsWrong(string[] args, string expected)
    {
        Assert.False(CommandLine.TryParse(args, out _, out var error));
        Assert.StartsWith(expected, error, StringComparison.Ordinal);
    }

    [Fact]
    public void EchoFlags_MakeAnEchoedRouteWithAgents()
    {
        Assert.True(CommandLine.TryParse(
            ["--route", "127.0.0.1:7000=127.0.0.1:7101,127.0.0.1:7102", "--echo", "lines", "--shadows", "1",
             "--agent", "127.0.0.1:7101=127.0.0.1:7201", "--agent=127.0.0.1:7102=127.0.0.1:7202", "--echo-psk-file", "/run/relay/echo.psk", "--admin", "off"],
            out var command, out var error), error);
        Assert.True(RelayProgram.TryBuildConfig(command, out var config, out var errors), string.Join("; ", errors));
        var echo = config.Routes["route1"].Echo!;
        Assert.Equal((EchoCodec.Lines, 1), (echo.Codec, echo.Shadows));
        Assert.Equal(7201, config.Clusters["route1"].Endpoints["route1-1"].Agent!.Port);
        Assert.Equal(7202, config.Clusters["route1"].Endpoints["route1-2"].Agent!.Port);
        Assert.Equal("/run/relay/echo.psk", config.Echo.PskFile);
    }

    [Fact]
    public void EchoFlags_SayWhatIsWrong()
    {
        Assert.False(CommandLine.TryParse(["--echo", "xml"], out _, out var error));
        Assert.StartsWith("--echo: \"xml\" is not one of raw, lines", error, StringComparison.Ordinal);
        Assert.False(CommandLine.TryParse(["--agent", "127.0.0.1:7101"], out _, out error));
        Assert.StartsWith("--agent 127.0.0.1:7101: expected UPSTREAM=AGENT", error, StringComparison.Ordinal);

        Assert.True(CommandLine.TryParse(["--route", "127.0.0.1:7000=127.0.0.1:7101", "--echo", "raw", "--agent", "127.0.0.1:7999=127.0.0.1:7201", "--admin", "off"], out var command, out _));
        Assert.False(RelayProgram.TryBuildConfig(command, out _, out var errors));
        Assert.Contains("--agent 127.0.0.1:7999=...: 127.0.0.1:7999 is not an upstream of any --route", errors);

        Assert.True(CommandLine.TryParse(["--route", "127.0.0.1:7000=127.0.0.1:7101", "--echo", "raw", "--admin", "off"], out command, out _));
        Assert.False(RelayProgram.TryBuildConfig(command, out _, out errors));
        Assert.Contains(errors, e => e.StartsWith("routes.route1.echo.shadows: cluster \"route1\" has no endpoint with an \"agent\"", StringComparison.Ordinal));
    }

    [Fact]
    public void NothingToDo_IsAnError()
    {
        Assert.True(CommandLine.TryParse([], out var command, out _));
        Assert.False(RelayProgram.TryBuildConfig(command, out _, out var errors));
        Assert.Equal("nothing to relay: give --config FILE or at least one --route LISTEN=UPSTREAM", Assert.Single(errors));
    }

    [Fact]
    public void BadUpstream_NamesTheRouteFlag()
    {
        Assert.True(CommandLine.TryParse(["--route=127.0.0.1:7000=127.0.0.1:0"], out var command, out _));
        Assert.False(RelayProgram.TryBuildConfig(command, out _, out var errors));
        Assert.Equal("--route 127.0.0.1:7000=127.0.0.1:0: upstream \"127.0.0.1:0\": an upstream port must be from 1 to 65535", Assert.Single(errors));
    }

    [Fact]
    public void DrainTimeoutFlag_Overrides()
    {
        Assert.True(CommandLine.TryParse(["--route", "127.0.0.1:7000=127.0.0.1:1", "--drain-timeout=5s"], out var command, out _));
        Assert.True(RelayProgram.TryBuildConfig(command, out var config, out _));
        Assert.Equal(TimeSpan.FromSeconds(5), config.Shutdown.DrainTimeout);
    }
}
