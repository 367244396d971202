using System.Globalization;

namespace Relay.Predict.Tests.Evaluation;

/// <summary>Finds and reads the NAB subset (shared/datasets/nab above the test's base directory).</summary>
internal static class Nab
{
    public static string? Root { get; } = Locate();

    public static string SkipReason => "NAB data not found: no folder containing shared/datasets/nab above " + AppContext.BaseDirectory;

    private static string? Locate()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "shared", "datasets", "nab");
            if (Directory.Exists(candidate))
            {
                return candidate;
            }
        }

        return null;
    }

    public static (DateTime[] Timestamps, double[] Values) Load(string relativePath)
    {
        var timestamps = new List<DateTime>();
        var values = new List<double>();
        foreach (var line in File.ReadLines(Path.Combine(Root!, "data", relativePath)).Skip(1))
        {
            var parts = line.Split(',');
            timestamps.Add(DateTime.Parse(parts[0], CultureInfo.InvariantCulture));
            values.Add(double.Parse(parts[1], CultureInfo.InvariantCulture));
        }

        return ([.. timestamps], [.. values]);
    }
}
