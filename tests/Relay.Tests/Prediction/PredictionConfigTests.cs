using Relay.Configuration;

namespace Relay.Tests.Prediction;

public sealed class PredictionConfigTests
{
    private const string Topology = """
        "routes": { "r": { "listen": "127.0.0.1:0", "cluster": "c" } },
        "clusters": { "c": { "endpoints": { "e": { "address": "127.0.0.1:1" } } } }
        """;

    [Fact]
    public void DefaultsAreOffWithTheLibrarysHorizonAndThreshold()
    {
        var result = ConfigLoader.Parse($$"""{ "prediction": { }, {{Topology}} }""");
        Assert.True(result.IsValid, string.Join("\n", result.Errors));
        var p = result.Config!.Prediction;
        Assert.Equal((false, TimeSpan.FromMilliseconds(100), TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(30), 0.5, 0.8), (p.Enabled, p.Interval, p.EvaluateInterval, p.Horizon, p.Threshold, p.RestoreAbove));
    }

    [Fact]
    public void EveryKeyIsRead()
    {
        var result = ConfigLoader.Parse($$"""
            { "prediction": { "enabled": true, "interval": "50ms", "evaluateInterval": "2s", "horizon": "1m", "threshold": 0.4,
              "restoreAbove": 0.9, "endpointCapacity": 500, "cpuLimit": 0.8, "maxMigrationsPerSecond": 5, "optimise": true }, {{Topology}} }
            """);
        Assert.True(result.IsValid, string.Join("\n", result.Errors));
        Assert.Equal(
            new PredictionConfig
            {
                Enabled = true,
                Interval = TimeSpan.FromMilliseconds(50),
                EvaluateInterval = TimeSpan.FromSeconds(2),
                Horizon = TimeSpan.FromMinutes(1),
                Threshold = 0.4,
                RestoreAbove = 0.9,
                EndpointCapacity = 500,
                CpuLimit = 0.8,
                MaxMigrationsPerSecond = 5,
                Optimise = true,
            },
            result.Config!.Prediction);
    }

    [Theory]
    [InlineData("""{ "interval": "5s" }""", "prediction.interval: must be from 10ms to 1s")]
    [InlineData("""{ "evaluateInterval": "10s" }""", "prediction.evaluateInterval: must be from prediction.interval (100ms) to 4s")]
    [InlineData("""{ "horizon": "500ms" }""", "prediction.horizon: must be from 1s to 1h")]
    [InlineData("""{ "threshold": 1.5 }""", "prediction.threshold: 1.5 is out of range")]
    [InlineData("""{ "threshold": 0.9, "restoreAbove": 0.85 }""", "prediction.restoreAbove: must be above prediction.threshold")]
    [InlineData("""{ "enabled": "yes" }""", "prediction.enabled:")]
    [InlineData("""{ "treshold": 0.5 }""", "prediction.treshold")]
    public void ErrorsNameTheirKey(string prediction, string expected)
    {
        var result = ConfigLoader.Parse($$"""{ "prediction": {{prediction}} }""");
        Assert.False(result.IsValid);
        Assert.Contains(result.Errors, e => e.StartsWith(expected, StringComparison.Ordinal));
    }

    [Fact]
    public void TheShippedConfigurationIsValidAndLeavesPredictionOff()
    {
        var path = Path.Combine(AppContext.BaseDirectory, "..", "..", "..", "..", "..", "config", "relay.json");
        var result = ConfigLoader.LoadFile(path);
        Assert.True(result.IsValid, string.Join("\n", result.Errors));
        Assert.False(result.Config!.Prediction.Enabled);
    }
}
