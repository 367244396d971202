using System.Net;

namespace Relay.Configuration;

/// <summary>Checks a whole configuration for contradictions; adds one message per problem.</summary>
public static class ConfigValidator
{
    public static IReadOnlyList<string> Validate(RelayConfig config)
    {
        var errors = new List<string>();
        Validate(config, errors);
        return errors;
    }

    public static void Validate(RelayConfig config, List<string> errors)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(errors);

        if (config.Routes.IsEmpty)
        {
            errors.Add("routes: at least one route is required");
        }

        var listens = new Dictionary<IPEndPoint, string>();
        foreach (var route in config.Routes.Values.OrderBy(r => r.Name, StringComparer.Ordinal))
        {
            var path = $"routes.{route.Name}";
            if (!config.Clusters.TryGetValue(route.Cluster, out var cluster))
            {
                var known = config.Clusters.IsEmpty ? "none are defined" : "defined: " + string.Join(", ", config.Clusters.Keys.Order(StringComparer.Ordinal));
                errors.Add($"{path}.cluster: cluster \"{route.Cluster}\" is not defined ({known})");
            }
            else if (cluster.Endpoints.IsEmpty)
            {
                errors.Add($"{path}.cluster: cluster \"{route.Cluster}\" has no endpoints");
            }

            if (route.Listen.Port != 0 && listens.TryGetValue(route.Listen, out var other))
            {
                errors.Add($"{path}.listen: {route.Listen} is already the listen address of routes.{other}");
            }
            else
            {
                listens[route.Listen] = route.Name;
            }

            if (config.Admin.Listen is { Port: not 0 } admin && admin.Equals(route.Listen))
            {
                errors.Add($"{path}.listen: {route.Listen} is also admin.listen");
            }

            if (route.MaxSessions != 0 && route.MaxSessionsPerClient > route.MaxSessions)
            {
                errors.Add($"{path}.maxSessionsPerClient: {route.MaxSessionsPerClient} is more than maxSessions ({route.MaxSessions})");
            }

            if (route.Echo is { } echo)
            {
                ValidateEcho(config, route, echo, $"{path}.echo", errors);
            }

            if (route.Http?.Mirror is { } mirror)
            {
                for (var i = 0; i < mirror.Shadows.Length; i++)
                {
                    var id = mirror.Shadows[i];
                    if (!config.Clusters.Values.Any(c => c.Endpoints.ContainsKey(id)))
                    {
                        errors.Add($"{path}.mirror.shadows[{i}]: endpoint \"{id}\" is not defined in any cluster");
                    }
                }
            }
        }

        var endpointOwners = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var cluster in config.Clusters.Values.OrderBy(c => c.Name, StringComparer.Ordinal))
        {
            var path = $"clusters.{cluster.Name}";
            var active = cluster.ActiveHealth;
            if (active.Enabled && active.Timeout >= active.Interval)
            {
                errors.Add($"{path}.healthCheck.active.timeout: {DurationParser.Format(active.Timeout)} must be shorter than interval ({DurationParser.Format(active.Interval)})");
            }

            var addresses = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
            foreach (var endpoint in cluster.Endpoints.Values.OrderBy(e => e.Id, StringComparer.Ordinal))
            {
                var epath = $"{path}.endpoints.{endpoint.Id}";
                if (endpointOwners.TryGetValue(endpoint.Id, out var owner))
                {
                    errors.Add($"{epath}: endpoint id \"{endpoint.Id}\" is also used in clusters.{owner}; endpoint ids must be unique");
                }
                else
                {
                    endpointOwners[endpoint.Id] = cluster.Name;
                }

                var key = $"{endpoint.Address.Host}:{endpoint.Address.Port}";
                if (addresses.TryGetValue(key, out var twin))
                {
                    errors.Add($"{epath}.address: {key} is also the address of {path}.endpoints.{twin}");
                }
                else
                {
                    addresses[key] = endpoint.Id;
                }
            }
        }
    }

    /// <summary>Largest message a route's codec may hold back: a partial message plus one read must stay under the pipe's pause threshold.</summary>
    public static int MaxEchoMessageBytes(TransportTuning tuning) => Math.Max(3, tuning.MaxBufferedBytes - tuning.BlockBytes);

    /// <summary>The message limit a route's codec runs with: its own setting, or the codec default within the pipe's buffer.</summary>
    public static int EffectiveMaxMessageBytes(EchoPolicyConfig echo, TransportTuning tuning)
    {
        var cap = MaxEchoMessageBytes(tuning);
        var codecDefault = echo.Codec == EchoCodec.Lines ? 64 * 1024 : 16 * 1024 * 1024;
        return echo.MaxMessageBytes > 0 ? echo.MaxMessageBytes : Math.Min(codecDefault, cap);
    }

    public static void ValidateEcho(RelayConfig config, RouteConfig route, EchoPolicyConfig echo, string path, List<string> errors)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(route);
        ArgumentNullException.ThrowIfNull(echo);
        ArgumentNullException.ThrowIfNull(errors);
        var cap = MaxEchoMessageBytes(config.Tuning);
        if (echo.Codec != EchoCodec.Raw && echo.MaxMessageBytes > cap)
        {
            errors.Add($"{path}.maxMessageBytes: {echo.MaxMessageBytes} is more than the {cap} bytes a pump can hold back (tuning.maxBufferedBytes {config.Tuning.MaxBufferedBytes} minus tuning.blockBytes {config.Tuning.BlockBytes}); raise tuning.maxBufferedBytes or lower it");
        }

        if (echo.AckTimeout <= echo.Interval)
        {
            errors.Add($"{path}.ackTimeout: {DurationParser.Format(echo.AckTimeout)} must be longer than interval ({DurationParser.Format(echo.Interval)}): input is shipped, and so acked, once per interval");
        }

        if (echo.AckTimeout < TimeSpan.FromSeconds(1))
        {
            errors.Add($"{path}.ackTimeout: {DurationParser.Format(echo.AckTimeout)} is shorter than 1s; an idle session's shadow is kept alive by its agent's heartbeats (every 500ms by default)");
        }

        if (echo.Shadows > 0 && config.Clusters.TryGetValue(route.Cluster, out var cluster) && !cluster.Endpoints.Values.Any(e => e.Agent is not null))
        {
            errors.Add($"{path}.shadows: cluster \"{route.Cluster}\" has no endpoint with an \"agent\" address, so no session can have a shadow; give endpoints an agent or set shadows to 0");
        }
    }
}
