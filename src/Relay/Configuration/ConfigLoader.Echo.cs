using System.Collections.Immutable;
using System.Globalization;
using System.Net;
using System.Text.Json;
using Relay.Transport.Multipath;

namespace Relay.Configuration;

public static partial class ConfigLoader
{
    private sealed partial class Reader
    {
        private EchoConfig ReadEcho(JsonElement element, string path)
        {
            var echo = new EchoConfig();
            if (!ExpectObject(element, path))
            {
                return echo;
            }

            CheckKeys(element, path, "pskFile", "pskEnvironmentVariable", "paths", "takeoverTimeout", "maxConcurrentMigrations", "pathLossParity");
            var paths = echo.Paths;
            if (element.TryGetProperty("paths", out var pathsElement))
            {
                if (pathsElement.ValueKind != JsonValueKind.Array || pathsElement.GetArrayLength() is 0 or > 16)
                {
                    Errors.Add($"{path}.paths: expected an array of 1 to 16 local IP addresses, found {Describe(pathsElement)}");
                }
                else
                {
                    var builder = ImmutableArray.CreateBuilder<IPAddress>();
                    var i = 0;
                    foreach (var item in pathsElement.EnumerateArray())
                    {
                        if (item.ValueKind == JsonValueKind.String && IPAddress.TryParse(item.GetString(), out var ip))
                        {
                            builder.Add(ip);
                        }
                        else
                        {
                            Errors.Add($"{path}.paths[{i}]: expected an IP address such as \"127.0.0.1\", found {Describe(item)}");
                        }

                        i++;
                    }

                    paths = builder.ToImmutable();
                }
            }

            return echo with
            {
                PskFile = String(element, path, "pskFile"),
                PskEnvironmentVariable = String(element, path, "pskEnvironmentVariable") ?? RelayDefaults.EchoPskEnvironmentVariable,
                Paths = paths,
                TakeoverTimeout = Duration(element, path, "takeoverTimeout", RelayDefaults.TakeoverTimeout),
                MaxConcurrentMigrations = Int(element, path, "maxConcurrentMigrations", 16, 1, 10_000),
                PathLossParity = Enum(element, path, "pathLossParity", PathLossParity.AfterPathFailure, ("afterPathFailure", PathLossParity.AfterPathFailure), ("always", PathLossParity.Always), ("never", PathLossParity.Never)),
            };
        }

        private EchoPolicyConfig? ReadEchoPolicy(JsonElement element, string path) => ReadEchoPolicy(element, path, this);

        /// <summary>Reads an echo policy object; shared by the config file and <c>PUT /api/echo-policies/{route}</c>.</summary>
        internal static EchoPolicyConfig? ReadEchoPolicy(JsonElement element, string path, Reader reader)
        {
            if (!reader.ExpectObject(element, path))
            {
                return null;
            }

            reader.CheckKeys(element, path, "codec", "shadows", "interval", "retention", "maxLagBytes", "maxOutputLag", "ackTimeout", "redundancyFloor", "zoneDiversity", "maxMessageBytes", "uncomparedResponses", "failover", "stateScope");
            var interval = reader.Duration(element, path, "interval", RelayDefaults.EchoInterval);
            if (interval < TimeSpan.FromMilliseconds(1) || interval > TimeSpan.FromSeconds(60))
            {
                reader.Errors.Add($"{path}.interval: must be from 1ms to 60s, found \"{DurationParser.Format(interval)}\"");
            }

            return new EchoPolicyConfig
            {
                Codec = reader.Enum(
                    element, path, "codec", EchoCodec.Raw,
                    ("raw", EchoCodec.Raw), ("lines", EchoCodec.Lines), ("length-prefixed-16", EchoCodec.LengthPrefixed16),
                    ("length-prefixed-32", EchoCodec.LengthPrefixed32), ("resp", EchoCodec.Resp)),
                Shadows = reader.Int(element, path, "shadows", 1, 0, 8),
                Interval = interval,
                RetentionBytes = reader.Size(element, path, "retention", RelayDefaults.EchoRetentionBytes, 64 * 1024, 1L << 34),
                MaxLagBytes = reader.Size(element, path, "maxLagBytes", RelayDefaults.EchoMaxLagBytes, 1, 1L << 34),
                MaxOutputLag = element.TryGetProperty("maxOutputLag", out _) ? reader.Int(element, path, "maxOutputLag", 0, 0, int.MaxValue) : null,
                AckTimeout = reader.Duration(element, path, "ackTimeout", RelayDefaults.EchoAckTimeout),
                RedundancyFloor = reader.Int(element, path, "redundancyFloor", 1, 0, 8),
                ZoneDiversity = reader.Bool(element, path, "zoneDiversity", true),
                MaxMessageBytes = reader.Int(element, path, "maxMessageBytes", 0, 0, 64 * 1024 * 1024),
                UncomparedResponses = reader.Int(element, path, "uncomparedResponses", 0, 0, 1_000_000),
                Failover = reader.Bool(element, path, "failover", true),
                StateScope = reader.Enum(element, path, "stateScope", EchoStateScope.Backend, ("backend", EchoStateScope.Backend), ("connection", EchoStateScope.Connection)),
            };
        }

        /// <summary>A byte size: a whole number, or a string such as "64KiB", "4MiB", "1GiB".</summary>
        private long Size(JsonElement parent, string path, string name, long fallback, long min, long max)
        {
            if (!parent.TryGetProperty(name, out var value))
            {
                return fallback;
            }

            long size;
            if (value.ValueKind == JsonValueKind.Number && value.TryGetInt64(out var number))
            {
                size = number;
            }
            else if (value.ValueKind != JsonValueKind.String || !TryParseSize(value.GetString()!, out size))
            {
                Errors.Add($"{path}.{name}: expected a size in bytes such as 65536, \"64KiB\" or \"4MiB\", found {Describe(value)}");
                return fallback;
            }

            if (size < min || size > max)
            {
                Errors.Add($"{path}.{name}: {size} bytes is out of range ({min} to {max})");
                return fallback;
            }

            return size;
        }

        private static bool TryParseSize(string text, out long size)
        {
            size = 0;
            text = text.Trim();
            (string Suffix, long Factor)[] units = [("KiB", 1L << 10), ("MiB", 1L << 20), ("GiB", 1L << 30), ("B", 1)];
            foreach (var (suffix, factor) in units)
            {
                if (text.EndsWith(suffix, StringComparison.OrdinalIgnoreCase)
                    && long.TryParse(text.AsSpan(0, text.Length - suffix.Length).Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var count)
                    && count <= long.MaxValue / factor)
                {
                    size = count * factor;
                    return true;
                }
            }

            return long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out size);
        }
    }

    /// <summary>Parses an echo policy sent to the admin API; errors name keys under <paramref name="path"/>.</summary>
    public static (EchoPolicyConfig? Policy, IReadOnlyList<string> Errors) ParseEchoPolicy(string json, string path)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(json, s_documentOptions);
        }
        catch (JsonException ex)
        {
            return (null, [$"{path}: not valid JSON at line {ex.LineNumber + 1}, byte {ex.BytePositionInLine + 1}: {ex.Message}"]);
        }

        using (document)
        {
            var reader = new Reader();
            var policy = Reader.ReadEchoPolicy(document.RootElement, path, reader);
            return reader.Errors.Count == 0 ? (policy, []) : (null, [.. reader.Errors]);
        }
    }
}
