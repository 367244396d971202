using System.Collections.Immutable;
using System.Globalization;
using System.Net;
using System.Text.Json;

namespace Relay.Configuration;

/// <summary>
/// Reads the JSON configuration into a <see cref="RelayConfig"/>, collecting every problem with the
/// key it belongs to (YARP ConfigValidator reports all errors at once; so do we).
/// </summary>
public static partial class ConfigLoader
{
    private static readonly JsonDocumentOptions s_documentOptions = new()
    {
        CommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
    };

    public static ConfigResult LoadFile(string path)
    {
        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return ConfigResult.Failed($"{path}: cannot read the file: {ex.Message}");
        }

        return Parse(text, path);
    }

    public static ConfigResult Parse(string json, string source = "config")
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(json, s_documentOptions);
        }
        catch (JsonException ex)
        {
            return ConfigResult.Failed($"{source}: not valid JSON at line {ex.LineNumber + 1}, byte {ex.BytePositionInLine + 1}: {ex.Message}");
        }

        using (document)
        {
            var reader = new Reader();
            var config = reader.ReadRoot(document.RootElement);
            if (reader.Errors.Count == 0)
            {
                ConfigValidator.Validate(config, reader.Errors);
            }

            return reader.Errors.Count == 0 ? new ConfigResult(config, []) : new ConfigResult(null, [.. reader.Errors]);
        }
    }

    private static readonly string[] s_httpRouteKeys = ["affinity", "mirror", "retries", "idempotencyKeyHeader", "requestTimeout", "maxRetryBodyBytes"];

    private sealed partial class Reader
    {
        public List<string> Errors { get; } = [];

        public RelayConfig ReadRoot(JsonElement root)
        {
            if (!ExpectObject(root, "(root)"))
            {
                return new RelayConfig();
            }

            CheckKeys(root, "", "admin", "shutdown", "tuning", "echo", "prediction", "routes", "clusters", "$schema");
            var config = new RelayConfig();
            if (root.TryGetProperty("admin", out var admin))
            {
                config = config with { Admin = ReadAdmin(admin, "admin") };
            }

            if (root.TryGetProperty("shutdown", out var shutdown) && ExpectObject(shutdown, "shutdown"))
            {
                CheckKeys(shutdown, "shutdown", "drainTimeout");
                config = config with { Shutdown = new ShutdownConfig { DrainTimeout = Duration(shutdown, "shutdown", "drainTimeout", RelayDefaults.DrainTimeout) } };
            }

            if (root.TryGetProperty("tuning", out var tuning) && ExpectObject(tuning, "tuning"))
            {
                CheckKeys(tuning, "tuning", "blockBytes", "maxBufferedBytes", "inlineScheduling", "epoll", "epollReactors");
                config = config with
                {
                    Tuning = new TransportTuning
                    {
                        BlockBytes = Int(tuning, "tuning", "blockBytes", RelayDefaults.BlockBytes, 4096, 1024 * 1024),
                        MaxBufferedBytes = Int(tuning, "tuning", "maxBufferedBytes", RelayDefaults.MaxBufferedBytes, 4096, 64 * 1024 * 1024),
                        InlineScheduling = Bool(tuning, "tuning", "inlineScheduling", true),
                        Epoll = Bool(tuning, "tuning", "epoll", true),
                        EpollReactors = Int(tuning, "tuning", "epollReactors", 0, 0, 64),
                    },
                };
            }

            if (root.TryGetProperty("echo", out var echo))
            {
                config = config with { Echo = ReadEcho(echo, "echo") };
            }

            if (root.TryGetProperty("prediction", out var prediction))
            {
                config = config with { Prediction = ReadPrediction(prediction, "prediction") };
            }

            var routes = ImmutableDictionary.CreateBuilder<string, RouteConfig>(StringComparer.Ordinal);
            if (root.TryGetProperty("routes", out var routesElement) && ExpectObject(routesElement, "routes"))
            {
                foreach (var property in routesElement.EnumerateObject())
                {
                    var route = ReadRoute(property.Name, property.Value, $"routes.{property.Name}");
                    if (route is not null)
                    {
                        routes[property.Name] = route;
                    }
                }
            }

            var clusters = ImmutableDictionary.CreateBuilder<string, ClusterConfig>(StringComparer.Ordinal);
            if (root.TryGetProperty("clusters", out var clustersElement) && ExpectObject(clustersElement, "clusters"))
            {
                foreach (var property in clustersElement.EnumerateObject())
                {
                    var cluster = ReadCluster(property.Name, property.Value, $"clusters.{property.Name}");
                    if (cluster is not null)
                    {
                        clusters[property.Name] = cluster;
                    }
                }
            }

            return config with { Routes = routes.ToImmutable(), Clusters = clusters.ToImmutable() };
        }

        private AdminConfig ReadAdmin(JsonElement element, string path)
        {
            var admin = new AdminConfig();
            if (!ExpectObject(element, path))
            {
                return admin;
            }

            CheckKeys(element, path, "listen", "tokenFile", "tokenEnvironmentVariable");
            if (element.TryGetProperty("listen", out var listen))
            {
                if (listen.ValueKind == JsonValueKind.Null)
                {
                    admin = admin with { Listen = null };
                }
                else
                {
                    admin = admin with { Listen = ListenAddress(listen, $"{path}.listen") };
                }
            }

            return admin with
            {
                TokenFile = String(element, path, "tokenFile"),
                TokenEnvironmentVariable = String(element, path, "tokenEnvironmentVariable") ?? RelayDefaults.AdminTokenEnvironmentVariable,
            };
        }

        private RouteConfig? ReadRoute(string name, JsonElement element, string path)
        {
            if (!ExpectObject(element, path))
            {
                return null;
            }

            CheckKeys(element, path, ["listen", "cluster", "maxSessions", "maxSessionsPerClient", "idleTimeout", "protocol", "echo", .. s_httpRouteKeys]);
            IPEndPoint? listen = null;
            if (element.TryGetProperty("listen", out var listenElement))
            {
                listen = ListenAddress(listenElement, $"{path}.listen");
            }
            else
            {
                Errors.Add($"{path}.listen: required (an address such as \"127.0.0.1:7000\")");
            }

            var cluster = String(element, path, "cluster");
            if (cluster is null)
            {
                Errors.Add($"{path}.cluster: required (the name of a cluster under \"clusters\")");
            }

            var maxSessions = Int(element, path, "maxSessions", RelayDefaults.MaxSessionsPerRoute, 0, int.MaxValue);
            var maxPerClient = Int(element, path, "maxSessionsPerClient", 0, 0, int.MaxValue);
            var idle = Duration(element, path, "idleTimeout", RelayDefaults.IdleTimeout, allowZero: true);
            var protocol = Enum(element, path, "protocol", RouteProtocol.Tcp, ("tcp", RouteProtocol.Tcp), ("http", RouteProtocol.Http));
            HttpRouteConfig? http = null;
            if (protocol == RouteProtocol.Http)
            {
                http = ReadHttpRoute(element, path);
            }
            else
            {
                foreach (var key in s_httpRouteKeys)
                {
                    if (element.TryGetProperty(key, out _))
                    {
                        Errors.Add($"{path}.{key}: only an HTTP route has this key; add \"protocol\": \"http\" or remove it");
                    }
                }
            }

            EchoPolicyConfig? echo = null;
            if (element.TryGetProperty("echo", out var echoElement))
            {
                if (protocol == RouteProtocol.Http)
                {
                    Errors.Add($"{path}.echo: only a TCP route is echoed (an HTTP route mirrors instead: see \"mirror\")");
                }
                else if (echoElement.ValueKind != JsonValueKind.Null)
                {
                    echo = ReadEchoPolicy(echoElement, $"{path}.echo");
                }
            }

            if (listen is null || cluster is null)
            {
                return null;
            }

            return new RouteConfig
            {
                Name = name,
                Listen = listen,
                Cluster = cluster,
                MaxSessions = maxSessions,
                MaxSessionsPerClient = maxPerClient,
                IdleTimeout = idle,
                Protocol = protocol,
                Http = http,
                Echo = echo,
            };
        }

        private ClusterConfig? ReadCluster(string name, JsonElement element, string path)
        {
            if (!ExpectObject(element, path))
            {
                return null;
            }

            CheckKeys(element, path, "loadBalancing", "connectTimeout", "connectAttempts", "proxyProtocol", "healthCheck", "endpoints");
            var cluster = new ClusterConfig
            {
                Name = name,
                LoadBalancing = Enum(element, path, "loadBalancing", LoadBalancingPolicy.PowerOfTwoChoices, ("powerOfTwoChoices", LoadBalancingPolicy.PowerOfTwoChoices), ("roundRobin", LoadBalancingPolicy.RoundRobin)),
                ConnectTimeout = Duration(element, path, "connectTimeout", RelayDefaults.ConnectTimeout),
                ConnectAttempts = Int(element, path, "connectAttempts", RelayDefaults.ConnectAttempts, 1, 100),
                ProxyProtocol = Enum(element, path, "proxyProtocol", ProxyProtocolMode.None, ("none", ProxyProtocolMode.None), ("v2", ProxyProtocolMode.V2)),
            };

            if (element.TryGetProperty("healthCheck", out var health) && ExpectObject(health, $"{path}.healthCheck"))
            {
                var hpath = $"{path}.healthCheck";
                CheckKeys(health, hpath, "active", "passive");
                if (health.TryGetProperty("active", out var active) && ExpectObject(active, $"{hpath}.active"))
                {
                    var apath = $"{hpath}.active";
                    CheckKeys(active, apath, "enabled", "interval", "timeout", "healthyThreshold", "unhealthyThreshold");
                    cluster = cluster with
                    {
                        ActiveHealth = new ActiveHealthConfig
                        {
                            Enabled = Bool(active, apath, "enabled", true),
                            Interval = Duration(active, apath, "interval", RelayDefaults.ProbeInterval),
                            Timeout = Duration(active, apath, "timeout", RelayDefaults.ProbeTimeout),
                            HealthyThreshold = Int(active, apath, "healthyThreshold", 2, 1, 100),
                            UnhealthyThreshold = Int(active, apath, "unhealthyThreshold", 3, 1, 100),
                        },
                    };
                }

                if (health.TryGetProperty("passive", out var passive) && ExpectObject(passive, $"{hpath}.passive"))
                {
                    var ppath = $"{hpath}.passive";
                    CheckKeys(passive, ppath, "enabled", "failureThreshold", "ejectionTime");
                    cluster = cluster with
                    {
                        PassiveHealth = new PassiveHealthConfig
                        {
                            Enabled = Bool(passive, ppath, "enabled", true),
                            FailureThreshold = Int(passive, ppath, "failureThreshold", 3, 1, 1000),
                            EjectionTime = Duration(passive, ppath, "ejectionTime", RelayDefaults.EjectionTime),
                        },
                    };
                }
            }

            var endpoints = ImmutableDictionary.CreateBuilder<string, EndpointConfig>(StringComparer.Ordinal);
            if (element.TryGetProperty("endpoints", out var endpointsElement) && ExpectObject(endpointsElement, $"{path}.endpoints"))
            {
                foreach (var property in endpointsElement.EnumerateObject())
                {
                    var epath = $"{path}.endpoints.{property.Name}";
                    if (!ExpectObject(property.Value, epath))
                    {
                        continue;
                    }

                    CheckKeys(property.Value, epath, "address", "region", "zone", "agent");
                    var addressText = String(property.Value, epath, "address");
                    if (addressText is null)
                    {
                        Errors.Add($"{epath}.address: required (\"host:port\")");
                        continue;
                    }

                    if (!AddressParser.TryParseUpstream(addressText, out var address, out var problem))
                    {
                        Errors.Add($"{epath}.address: {problem}");
                        continue;
                    }

                    endpoints[property.Name] = new EndpointConfig
                    {
                        Id = property.Name,
                        Address = address,
                        Region = String(property.Value, epath, "region"),
                        Zone = String(property.Value, epath, "zone"),
                        Agent = property.Value.TryGetProperty("agent", out var agent) ? ListenAddress(agent, $"{epath}.agent") : null,
                    };
                }
            }
            else if (!element.TryGetProperty("endpoints", out _))
            {
                Errors.Add($"{path}.endpoints: required (an object of endpoint id to {{\"address\": \"host:port\"}})");
            }

            return cluster with { Endpoints = endpoints.ToImmutable() };
        }

        private bool ExpectObject(JsonElement element, string path)
        {
            if (element.ValueKind == JsonValueKind.Object)
            {
                return true;
            }

            Errors.Add($"{path}: expected an object, found {Describe(element)}");
            return false;
        }

        private void CheckKeys(JsonElement element, string path, params string[] known)
        {
            foreach (var property in element.EnumerateObject())
            {
                if (Array.IndexOf(known, property.Name) >= 0)
                {
                    continue;
                }

                var key = path.Length == 0 ? property.Name : $"{path}.{property.Name}";
                var suggestion = known.Where(k => !k.StartsWith('$')).OrderBy(k => Levenshtein(k, property.Name)).FirstOrDefault();
                Errors.Add(suggestion is not null && Levenshtein(suggestion, property.Name) <= 3
                    ? $"{key}: unknown key (did you mean \"{suggestion}\"?)"
                    : $"{key}: unknown key (known: {string.Join(", ", known.Where(k => !k.StartsWith('$')))})");
            }
        }

        private string? String(JsonElement parent, string path, string name)
        {
            if (!parent.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null)
            {
                return null;
            }

            if (value.ValueKind != JsonValueKind.String || string.IsNullOrWhiteSpace(value.GetString()))
            {
                Errors.Add($"{path}.{name}: expected a non-empty string, found {Describe(value)}");
                return null;
            }

            return value.GetString();
        }

        private int Int(JsonElement parent, string path, string name, int fallback, int min, int max)
        {
            if (!parent.TryGetProperty(name, out var value))
            {
                return fallback;
            }

            if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt64(out var number))
            {
                Errors.Add($"{path}.{name}: expected a whole number, found {Describe(value)}");
                return fallback;
            }

            if (number < min || number > max)
            {
                Errors.Add($"{path}.{name}: {number} is out of range ({min} to {max})");
                return fallback;
            }

            return (int)number;
        }

        private bool Bool(JsonElement parent, string path, string name, bool fallback)
        {
            if (!parent.TryGetProperty(name, out var value))
            {
                return fallback;
            }

            if (value.ValueKind is not (JsonValueKind.True or JsonValueKind.False))
            {
                Errors.Add($"{path}.{name}: expected true or false, found {Describe(value)}");
                return fallback;
            }

            return value.GetBoolean();
        }

        private T Enum<T>(JsonElement parent, string path, string name, T fallback, params (string Name, T Value)[] choices)
        {
            var text = String(parent, path, name);
            if (text is null)
            {
                return fallback;
            }

            foreach (var (choiceName, choiceValue) in choices)
            {
                if (string.Equals(choiceName, text, StringComparison.OrdinalIgnoreCase))
                {
                    return choiceValue;
                }
            }

            Errors.Add($"{path}.{name}: \"{text}\" is not one of {string.Join(", ", choices.Select(c => $"\"{c.Name}\""))}");
            return fallback;
        }

        private TimeSpan Duration(JsonElement parent, string path, string name, TimeSpan fallback, bool allowZero = false)
        {
            if (!parent.TryGetProperty(name, out var value))
            {
                return fallback;
            }

            if (value.ValueKind != JsonValueKind.String || !DurationParser.TryParse(value.GetString(), out var duration))
            {
                Errors.Add($"{path}.{name}: expected a duration such as \"500ms\", \"2s\", \"5m\" or \"1h\", found {Describe(value)}");
                return fallback;
            }

            if (duration < TimeSpan.Zero || (duration == TimeSpan.Zero && !allowZero))
            {
                Errors.Add($"{path}.{name}: must be {(allowZero ? "zero or more" : "more than zero")}, found {Describe(value)}");
                return fallback;
            }

            return duration;
        }

        private IPEndPoint? ListenAddress(JsonElement value, string path)
        {
            if (value.ValueKind != JsonValueKind.String)
            {
                Errors.Add($"{path}: expected an address such as \"127.0.0.1:7000\", found {Describe(value)}");
                return null;
            }

            if (!AddressParser.TryParseListen(value.GetString()!, out var endPoint, out var problem))
            {
                Errors.Add($"{path}: {problem}");
                return null;
            }

            return endPoint;
        }

        private static string Describe(JsonElement value) => value.ValueKind switch
        {
            JsonValueKind.String => $"\"{value.GetString()}\"",
            JsonValueKind.Number => value.GetRawText(),
            JsonValueKind.True or JsonValueKind.False => value.GetRawText(),
            JsonValueKind.Null => "null",
            JsonValueKind.Object => "an object",
            JsonValueKind.Array => "an array",
            _ => value.ValueKind.ToString(),
        };

        private static int Levenshtein(string a, string b)
        {
            a = a.ToLowerInvariant();
            b = b.ToLowerInvariant();
            var previous = new int[b.Length + 1];
            var current = new int[b.Length + 1];
            for (var j = 0; j <= b.Length; j++)
            {
                previous[j] = j;
            }

            for (var i = 1; i <= a.Length; i++)
            {
                current[0] = i;
                for (var j = 1; j <= b.Length; j++)
                {
                    var cost = a[i - 1] == b[j - 1] ? 0 : 1;
                    current[j] = Math.Min(Math.Min(current[j - 1] + 1, previous[j] + 1), previous[j - 1] + cost);
                }

                (previous, current) = (current, previous);
            }

            return previous[b.Length];
        }
    }
}

public sealed record ConfigResult(RelayConfig? Config, IReadOnlyList<string> Errors)
{
    public bool IsValid => Config is not null && Errors.Count == 0;

    public static ConfigResult Failed(string error) => new(null, [error]);
}

public static class DurationParser
{
    public static bool TryParse(string? text, out TimeSpan duration)
    {
        duration = default;
        if (string.IsNullOrWhiteSpace(text))
        {
            return false;
        }

        text = text.Trim();
        var unitStart = text.Length;
        while (unitStart > 0 && char.IsAsciiLetter(text[unitStart - 1]))
        {
            unitStart--;
        }

        var unit = text[unitStart..];
        if (!double.TryParse(text.AsSpan(0, unitStart), NumberStyles.Float, CultureInfo.InvariantCulture, out var number) || double.IsNaN(number) || double.IsInfinity(number))
        {
            return false;
        }

        double? ms = unit switch
        {
            "ms" => number,
            "s" => number * 1000,
            "m" => number * 60_000,
            "h" => number * 3_600_000,
            _ => null,
        };
        if (ms is null || Math.Abs(ms.Value) > TimeSpan.MaxValue.TotalMilliseconds / 2)
        {
            return false;
        }

        duration = TimeSpan.FromMilliseconds(ms.Value);
        return true;
    }

    public static string Format(TimeSpan duration) => duration.TotalMilliseconds % 1000 == 0
        ? $"{duration.TotalSeconds.ToString(CultureInfo.InvariantCulture)}s"
        : $"{duration.TotalMilliseconds.ToString(CultureInfo.InvariantCulture)}ms";
}

public static class AddressParser
{
    /// <summary>Parses a listen address: an IP literal (or "localhost", or "*" for all IPv4) and a port.</summary>
    public static bool TryParseListen(string text, out IPEndPoint endPoint, out string problem)
    {
        endPoint = null!;
        if (!TrySplit(text, out var host, out var port, out problem))
        {
            return false;
        }

        IPAddress? address = host switch
        {
            "localhost" => IPAddress.Loopback,
            "*" => IPAddress.Any,
            _ => IPAddress.TryParse(host, out var parsed) ? parsed : null,
        };
        if (address is null)
        {
            problem = $"\"{text}\": a listen address needs an IP literal, \"localhost\" or \"*\" before the port";
            return false;
        }

        endPoint = new IPEndPoint(address, port);
        return true;
    }

    /// <summary>Parses an upstream address: a host name or IP literal and a port from 1 to 65535.</summary>
    public static bool TryParseUpstream(string text, out DnsEndPoint endPoint, out string problem)
    {
        endPoint = null!;
        if (!TrySplit(text, out var host, out var port, out problem))
        {
            return false;
        }

        if (port == 0)
        {
            problem = $"\"{text}\": an upstream port must be from 1 to 65535";
            return false;
        }

        if (Uri.CheckHostName(host) == UriHostNameType.Unknown)
        {
            problem = $"\"{text}\": \"{host}\" is not a valid host name or IP address";
            return false;
        }

        endPoint = new DnsEndPoint(host, port);
        return true;
    }

    private static bool TrySplit(string text, out string host, out int port, out string problem)
    {
        host = "";
        port = 0;
        problem = "";
        text = text.Trim();
        var colon = text.LastIndexOf(':');
        if (colon <= 0 || colon == text.Length - 1)
        {
            problem = $"\"{text}\" is not host:port (for example \"127.0.0.1:7000\" or \"[::1]:7000\")";
            return false;
        }

        host = text[..colon];
        if (host.StartsWith('[') && host.EndsWith(']'))
        {
            host = host[1..^1];
        }
        else if (host.Contains(':', StringComparison.Ordinal))
        {
            problem = $"\"{text}\": put an IPv6 address in brackets, as \"[::1]:7000\"";
            return false;
        }

        if (!int.TryParse(text.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out port) || port > 65535)
        {
            problem = $"\"{text}\": the port must be a number from 0 to 65535";
            return false;
        }

        return true;
    }
}
