using System.Globalization;
using System.Text.Json;
using Relay.Predict.Evaluation;

namespace Relay.PredictEval;

/// <summary>One NAB series: timestamps, values and labelled windows as sample indices.</summary>
internal sealed record NabSeries(string Name, DateTime[] Timestamps, double[] Values, LabelledWindow[] Windows)
{
    public double SamplesPerHour
    {
        get
        {
            var gaps = new double[Timestamps.Length - 1];
            for (var i = 1; i < Timestamps.Length; i++)
            {
                gaps[i - 1] = (Timestamps[i] - Timestamps[i - 1]).TotalHours;
            }

            Array.Sort(gaps);
            return 1.0 / gaps[gaps.Length / 2];
        }
    }
}

/// <summary>Loads the NAB subset (CSV "timestamp,value" plus combined_windows.json).</summary>
internal static class NabData
{
    /// <summary>Walks up from <paramref name="start"/> to a folder holding shared/datasets/nab.</summary>
    public static string? Locate(string start)
    {
        for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "shared", "datasets", "nab");
            if (Directory.Exists(candidate))
            {
                return candidate;
            }
        }

        return null;
    }

    public static NabSeries Load(string root, string relativePath)
    {
        var lines = File.ReadAllLines(Path.Combine(root, "data", relativePath));
        var timestamps = new List<DateTime>(lines.Length);
        var values = new List<double>(lines.Length);
        for (var i = 1; i < lines.Length; i++)
        {
            var comma = lines[i].IndexOf(',', StringComparison.Ordinal);
            if (comma < 0)
            {
                continue;
            }

            if (DateTime.TryParse(lines[i].AsSpan(0, comma), CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal, out var ts)
                && double.TryParse(lines[i].AsSpan(comma + 1), NumberStyles.Float, CultureInfo.InvariantCulture, out var v))
            {
                timestamps.Add(ts);
                values.Add(v);
            }
        }

        var windows = new List<LabelledWindow>();
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(root, "combined_windows.json")));
        if (json.RootElement.TryGetProperty(relativePath, out var list))
        {
            foreach (var w in list.EnumerateArray())
            {
                var start = DateTime.Parse(w[0].GetString()!, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal);
                var end = DateTime.Parse(w[1].GetString()!, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal);
                var s = timestamps.FindIndex(t => t >= start);
                var e = timestamps.FindLastIndex(t => t <= end);
                if (s >= 0 && e >= s)
                {
                    windows.Add(new LabelledWindow(s, e));
                }
            }
        }

        return new NabSeries(relativePath, [.. timestamps], [.. values], [.. windows]);
    }

    public static IEnumerable<string> AllSeries(string root)
        => Directory.EnumerateFiles(Path.Combine(root, "data"), "*.csv", SearchOption.AllDirectories)
            .Select(p => Path.GetRelativePath(Path.Combine(root, "data"), p).Replace('\\', '/'))
            .Order(StringComparer.Ordinal);

    /// <summary>The forecast targets of the issue: nyc_taxi and the AWS CloudWatch series.</summary>
    public static IReadOnlyList<ForecastResult> EvaluateForecasts(string root)
    {
        var results = new List<ForecastResult>();
        foreach (var name in AllSeries(root).Where(n => n.Contains("nyc_taxi", StringComparison.Ordinal) || n.StartsWith("realAWSCloudwatch/", StringComparison.Ordinal)))
        {
            var series = Load(root, name);
            var perHour = series.SamplesPerHour;
            var season = (int)Math.Round(24 * perHour);
            var horizon = (int)Math.Round(perHour);
            results.Add(ForecastEvaluation.Evaluate(name, series.Values, season, horizon));
        }

        return results;
    }

    /// <summary>nyc_taxi as a demand series for the scaling advisor.</summary>
    public static IReadOnlyList<ScalingResult> EvaluateScaling(string root)
    {
        var taxi = Load(root, "realKnownCause/nyc_taxi.csv");
        return [.. ScalingEvaluation.Evaluate(taxi.Name, taxi.Values, stepSeconds: 1800, seasonLength: 48, leadSteps: 1, capacityPerEndpoint: 1000),
                .. ScalingEvaluation.Evaluate(taxi.Name, taxi.Values, stepSeconds: 1800, seasonLength: 48, leadSteps: 4, capacityPerEndpoint: 1000)];
    }

    public static IReadOnlyList<WindowDetectionResult> EvaluateWindows(string root)
    {
        var results = new List<WindowDetectionResult>();
        foreach (var name in AllSeries(root))
        {
            var series = Load(root, name);
            if (series.Windows.Length == 0)
            {
                continue;
            }

            var perHour = series.SamplesPerHour;
            results.AddRange(ForecastEvaluation.DetectWindows(name, series.Values, series.Windows, (int)Math.Round(24 * perHour), perHour));
        }

        return results;
    }
}
