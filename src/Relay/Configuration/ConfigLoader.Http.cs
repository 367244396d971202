using System.Collections.Immutable;
using System.Text.Json;

namespace Relay.Configuration;

/// <summary>The keys of an <c>"protocol": "http"</c> route (issue 6).</summary>
public static partial class ConfigLoader
{
    private sealed partial class Reader
    {
        private HttpRouteConfig ReadHttpRoute(JsonElement element, string path)
        {
            var http = new HttpRouteConfig
            {
                IdempotencyKeyHeader = HeaderName(element, path, "idempotencyKeyHeader", null),
                RequestTimeout = Duration(element, path, "requestTimeout", RelayDefaults.HttpRequestTimeout),
                MaxRetryBodyBytes = Int(element, path, "maxRetryBodyBytes", RelayDefaults.HttpMaxBufferedBodyBytes, 0, 64 * 1024 * 1024),
            };

            if (element.TryGetProperty("affinity", out var affinity) && ExpectObject(affinity, $"{path}.affinity"))
            {
                var apath = $"{path}.affinity";
                CheckKeys(affinity, apath, "mode", "name", "idleTimeout", "maxSessions");
                var mode = Enum(affinity, apath, "mode", AffinityMode.Cookie, ("cookie", AffinityMode.Cookie), ("header", AffinityMode.Header));
                var fallbackName = mode == AffinityMode.Cookie ? RelayDefaults.AffinityCookieName : RelayDefaults.AffinityHeaderName;
                http = http with
                {
                    Affinity = new AffinityConfig
                    {
                        Mode = mode,
                        Name = HeaderName(affinity, apath, "name", fallbackName)!,
                        IdleTimeout = Duration(affinity, apath, "idleTimeout", RelayDefaults.AffinityIdleTimeout),
                        MaxSessions = Int(affinity, apath, "maxSessions", RelayDefaults.AffinityMaxSessions, 1, 10_000_000),
                    },
                };
            }

            if (element.TryGetProperty("mirror", out var mirror) && ExpectObject(mirror, $"{path}.mirror"))
            {
                http = http with { Mirror = ReadMirror(mirror, $"{path}.mirror") };
            }

            if (element.TryGetProperty("retries", out var retries) && ExpectObject(retries, $"{path}.retries"))
            {
                var rpath = $"{path}.retries";
                CheckKeys(retries, rpath, "attempts", "backoff", "maxBackoff", "budgetPercent", "minBudget");
                var retry = new RetryConfig
                {
                    Attempts = Int(retries, rpath, "attempts", 3, 1, 10),
                    Backoff = Duration(retries, rpath, "backoff", RelayDefaults.RetryBackoff, allowZero: true),
                    MaxBackoff = Duration(retries, rpath, "maxBackoff", RelayDefaults.RetryMaxBackoff, allowZero: true),
                    BudgetPercent = Number(retries, rpath, "budgetPercent", 20, 0, 100),
                    MinBudget = Int(retries, rpath, "minBudget", 10, 0, 1_000_000),
                };
                if (retry.MaxBackoff < retry.Backoff)
                {
                    Errors.Add($"{rpath}.maxBackoff: {DurationParser.Format(retry.MaxBackoff)} is shorter than backoff ({DurationParser.Format(retry.Backoff)})");
                }

                http = http with { Retries = retry };
            }

            return http;
        }

        private MirrorConfig ReadMirror(JsonElement mirror, string path)
        {
            CheckKeys(mirror, path, "shadows", "percent", "methods", "maxBodyBytes", "header", "queueLength", "concurrency", "compare");
            var shadows = StringList(mirror, path, "shadows");
            if (!mirror.TryGetProperty("shadows", out _))
            {
                Errors.Add($"{path}.shadows: required (a list of endpoint ids that receive the copies)");
            }
            else if (shadows.IsEmpty)
            {
                Errors.Add($"{path}.shadows: list at least one endpoint id");
            }

            var config = new MirrorConfig
            {
                Shadows = shadows,
                Percent = Number(mirror, path, "percent", 100, 0, 100),
                Methods = Enum(mirror, path, "methods", MirrorMethods.All, ("all", MirrorMethods.All), ("nonIdempotent", MirrorMethods.NonIdempotent)),
                MaxBodyBytes = Int(mirror, path, "maxBodyBytes", RelayDefaults.HttpMaxBufferedBodyBytes, 0, 64 * 1024 * 1024),
                Header = HeaderName(mirror, path, "header", RelayDefaults.MirrorHeader)!,
                QueueLength = Int(mirror, path, "queueLength", RelayDefaults.MirrorQueueLength, 1, 1_000_000),
                Concurrency = Int(mirror, path, "concurrency", RelayDefaults.MirrorConcurrency, 1, 1024),
            };

            if (mirror.TryGetProperty("compare", out var compare) && ExpectObject(compare, $"{path}.compare"))
            {
                var cpath = $"{path}.compare";
                CheckKeys(compare, cpath, "enabled", "ignoreHeaders", "ignoreJsonFields", "window", "minSamples", "maxMismatchPercent");
                var window = Int(compare, cpath, "window", 100, 1, 100_000);
                var minSamples = Int(compare, cpath, "minSamples", 10, 1, 100_000);
                if (minSamples > window)
                {
                    Errors.Add($"{cpath}.minSamples: {minSamples} is more than window ({window})");
                }

                config = config with
                {
                    Compare = new CompareConfig
                    {
                        Enabled = Bool(compare, cpath, "enabled", true),
                        IgnoreHeaders = compare.TryGetProperty("ignoreHeaders", out _) ? StringList(compare, cpath, "ignoreHeaders") : RelayDefaults.CompareIgnoredHeaders,
                        IgnoreJsonFields = StringList(compare, cpath, "ignoreJsonFields"),
                        Window = window,
                        MinSamples = minSamples,
                        MaxMismatchPercent = Number(compare, cpath, "maxMismatchPercent", 0, 0, 100),
                    },
                };
            }

            return config;
        }

        private ImmutableArray<string> StringList(JsonElement parent, string path, string name)
        {
            if (!parent.TryGetProperty(name, out var value))
            {
                return [];
            }

            if (value.ValueKind != JsonValueKind.Array)
            {
                Errors.Add($"{path}.{name}: expected a list of strings, found {Describe(value)}");
                return [];
            }

            var builder = ImmutableArray.CreateBuilder<string>();
            var index = 0;
            foreach (var item in value.EnumerateArray())
            {
                if (item.ValueKind != JsonValueKind.String || string.IsNullOrWhiteSpace(item.GetString()))
                {
                    Errors.Add($"{path}.{name}[{index}]: expected a non-empty string, found {Describe(item)}");
                }
                else if (builder.Contains(item.GetString()!))
                {
                    Errors.Add($"{path}.{name}[{index}]: \"{item.GetString()}\" is listed twice");
                }
                else
                {
                    builder.Add(item.GetString()!);
                }

                index++;
            }

            return builder.ToImmutable();
        }

        private double Number(JsonElement parent, string path, string name, double fallback, double min, double max)
        {
            if (!parent.TryGetProperty(name, out var value))
            {
                return fallback;
            }

            if (value.ValueKind != JsonValueKind.Number || !value.TryGetDouble(out var number))
            {
                Errors.Add($"{path}.{name}: expected a number, found {Describe(value)}");
                return fallback;
            }

            if (number < min || number > max)
            {
                Errors.Add($"{path}.{name}: {value.GetRawText()} is out of range ({min} to {max})");
                return fallback;
            }

            return number;
        }

        /// <summary>A header or cookie name: an RFC 9110 token (letters, digits and !#$%&amp;'*+-.^_`|~).</summary>
        private string? HeaderName(JsonElement parent, string path, string name, string? fallback)
        {
            var text = String(parent, path, name);
            if (text is null)
            {
                return fallback;
            }

            foreach (var c in text)
            {
                if (!(char.IsAsciiLetterOrDigit(c) || "!#$%&'*+-.^_`|~".Contains(c, StringComparison.Ordinal)))
                {
                    Errors.Add($"{path}.{name}: \"{text}\" is not a valid header or cookie name (letters, digits and !#$%&'*+-.^_`|~ only)");
                    return fallback;
                }
            }

            return text;
        }
    }
}
