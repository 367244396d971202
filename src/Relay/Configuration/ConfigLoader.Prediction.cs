using System.Text.Json;

namespace Relay.Configuration;

public static partial class ConfigLoader
{
    private sealed partial class Reader
    {
        private PredictionConfig ReadPrediction(JsonElement element, string path)
        {
            var defaults = new PredictionConfig();
            if (!ExpectObject(element, path))
            {
                return defaults;
            }

            CheckKeys(element, path, "enabled", "interval", "evaluateInterval", "horizon", "threshold", "restoreAbove", "endpointCapacity", "cpuLimit", "maxMigrationsPerSecond", "optimise");
            var interval = Duration(element, path, "interval", defaults.Interval);
            if (interval < TimeSpan.FromMilliseconds(10) || interval > TimeSpan.FromSeconds(1))
            {
                Errors.Add($"{path}.interval: must be from 10ms to 1s, found \"{DurationParser.Format(interval)}\"");
            }

            // The scorer treats a gap of 5 s between full passes as a clock jump.
            var evaluate = Duration(element, path, "evaluateInterval", defaults.EvaluateInterval);
            if (evaluate < interval || evaluate > TimeSpan.FromSeconds(4))
            {
                Errors.Add($"{path}.evaluateInterval: must be from {path}.interval ({DurationParser.Format(interval)}) to 4s, found \"{DurationParser.Format(evaluate)}\"");
            }

            var horizon = Duration(element, path, "horizon", defaults.Horizon);
            if (horizon < TimeSpan.FromSeconds(1) || horizon > TimeSpan.FromHours(1))
            {
                Errors.Add($"{path}.horizon: must be from 1s to 1h, found \"{DurationParser.Format(horizon)}\"");
            }

            var threshold = Number(element, path, "threshold", defaults.Threshold, 0.01, 0.99);
            var restore = Number(element, path, "restoreAbove", Math.Max(defaults.RestoreAbove, Math.Min(1, threshold + 0.05)), 0.02, 1);
            if (restore <= threshold)
            {
                Errors.Add($"{path}.restoreAbove: must be above {path}.threshold ({threshold}), found {restore}");
            }

            return new PredictionConfig
            {
                Enabled = Bool(element, path, "enabled", defaults.Enabled),
                Interval = interval,
                EvaluateInterval = evaluate,
                Horizon = horizon,
                Threshold = threshold,
                RestoreAbove = restore,
                EndpointCapacity = Number(element, path, "endpointCapacity", defaults.EndpointCapacity, 1, 10_000_000),
                CpuLimit = Number(element, path, "cpuLimit", defaults.CpuLimit, 0.01, 1),
                MaxMigrationsPerSecond = Number(element, path, "maxMigrationsPerSecond", defaults.MaxMigrationsPerSecond, 0.1, 100_000),
                Optimise = Bool(element, path, "optimise", defaults.Optimise),
            };
        }
    }
}
