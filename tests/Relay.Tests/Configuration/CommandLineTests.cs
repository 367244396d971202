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
