using Relay.Clusters;
using Relay.Configuration;
using Relay.Echo.Splice;

namespace Relay.Admin;

/// <summary>Admin API for echo and splice: session echo state, migrate, notice, echo policies and their cost.</summary>
internal static class EchoApi
{
    // Relay-side CPU per echoed byte, from docs/benchmarks.md (AEAD 4.3 µs per 1.2 KB datagram,
    // Reed-Solomon and LZ4 well under 1 ns/B, echo log append and copy about 0.2 ns/B).
    private const double CpuNanosecondsPerByte = 4.5;
    private const double DatagramOverhead = 1.06;

    public static void Map(WebApplication app, RelayRuntime runtime, EchoManager echo)
    {
        app.Map("/api/sessions/{id:long}/migrate", [HttpMethods.Post], async context =>
        {
            var (id, request) = (context.RouteInt64("id"), context.Request);
            string? target = request.Query["target"];
            if (target is null)
            {
                var (body, error) = await request.ReadJsonAsync<MigrateRequest>().ConfigureAwait(false);
                if (error is not null)
                {
                    return error;
                }

                target = body?.Target;
            }

            var outcome = await echo.MigrateAsync(id, target).ConfigureAwait(false);
            if (outcome is null)
            {
                return runtime.Sessions.ContainsKey(id)
                    ? AdminRoutes.Error(StatusCodes.Status409Conflict, $"session {id} is not echoed (its route has no echo policy), so it cannot move")
                    : AdminRoutes.Error(StatusCodes.Status404NotFound, $"no session {id}");
            }

            return Results.Json(
                new { session = id, moved = outcome.Spliced, from = outcome.From, to = outcome.To, blackoutMs = outcome.BlackoutMs, error = outcome.Failure },
                statusCode: outcome.Spliced ? StatusCodes.Status200OK : StatusCodes.Status409Conflict);
        });

        app.Map("/api/endpoints/{id}/notice", [HttpMethods.Post], async context =>
        {
            var (id, request) = (context.Route("id"), context.Request);
            var endpoint = runtime.FindEndpoint(id);
            if (endpoint is null)
            {
                return AdminRoutes.Error(StatusCodes.Status404NotFound, $"no endpoint \"{id}\"");
            }

            var (body, error) = await request.ReadJsonAsync<NoticeRequest>().ConfigureAwait(false);
            if (error is not null)
            {
                return error;
            }

            DateTimeOffset at;
            if (body?.At is { } when)
            {
                at = when;
            }
            else if (body?.In is { } text)
            {
                if (!DurationParser.TryParse(text, out var within))
                {
                    return AdminRoutes.Error(StatusCodes.Status400BadRequest, $"in: expected a duration such as \"30s\", found \"{text}\"");
                }

                at = runtime.TimeProvider.GetUtcNow() + within;
            }
            else
            {
                return AdminRoutes.Error(StatusCodes.Status400BadRequest, "body: give \"at\" (an ISO 8601 time) or \"in\" (a duration such as \"30s\"): when the endpoint goes away");
            }

            var moving = echo.Notice(endpoint, at);
            return Results.Json(new { endpoint = id, goesAwayAt = at, draining = true, moving }, statusCode: StatusCodes.Status202Accepted);
        });

        app.Get("/api/echo-policies", _ => runtime.Snapshot.Config.Routes.Values
            .Where(r => r.Protocol == RouteProtocol.Tcp)
            .OrderBy(r => r.Name, StringComparer.Ordinal)
            .Select(r => new { route = r.Name, policy = PolicyView(echo.PolicyFor(r)) }));

        app.Get("/api/echo-policies/{route}", context => context.Route("route") is var route && runtime.Snapshot.Config.Routes.TryGetValue(route, out var r)
            ? Results.Json(new { route, policy = PolicyView(echo.PolicyFor(r)) })
            : AdminRoutes.Error(StatusCodes.Status404NotFound, $"no route \"{route}\""));

        app.Map("/api/echo-policies/{route}", [HttpMethods.Put], async context =>
        {
            var (route, request) = (context.Route("route"), context.Request);
            if (!runtime.Snapshot.Config.Routes.TryGetValue(route, out var r))
            {
                return AdminRoutes.Error(StatusCodes.Status404NotFound, $"no route \"{route}\"");
            }

            var (policy, errors) = await ReadPolicyAsync(request, runtime, r).ConfigureAwait(false);
            if (policy is null)
            {
                return Results.Json(new { errors }, statusCode: StatusCodes.Status400BadRequest);
            }

            echo.SetPolicy(route, policy);
            return Results.Json(new { route, policy = PolicyView(policy), appliesTo = "sessions that start from now on; live sessions keep the policy they started with" });
        });

        app.Map("/api/echo-policies/{route}/estimate", [HttpMethods.Get, HttpMethods.Post], async context =>
        {
            var (route, request) = (context.Route("route"), context.Request);
            if (!runtime.Snapshot.Config.Routes.TryGetValue(route, out var r))
            {
                return AdminRoutes.Error(StatusCodes.Status404NotFound, $"no route \"{route}\"");
            }

            var policy = echo.PolicyFor(r);
            if (HttpMethods.IsPost(request.Method) || request.ContentLength > 0)
            {
                var (proposed, errors) = await ReadPolicyAsync(request, runtime, r).ConfigureAwait(false);
                if (proposed is null)
                {
                    return Results.Json(new { errors }, statusCode: StatusCodes.Status400BadRequest);
                }

                policy = proposed;
            }

            return policy is null
                ? AdminRoutes.Error(StatusCodes.Status404NotFound, $"route \"{route}\" has no echo policy; POST one to this address to estimate it")
                : Results.Json(Estimate(runtime, echo, r, policy));
        });
    }

    private static async Task<(EchoPolicyConfig? Policy, IReadOnlyList<string> Errors)> ReadPolicyAsync(HttpRequest request, RelayRuntime runtime, RouteConfig route)
    {
        using var reader = new StreamReader(request.Body);
        var text = await reader.ReadToEndAsync().ConfigureAwait(false);
        var (policy, errors) = ConfigLoader.ParseEchoPolicy(text, "policy");
        if (policy is null)
        {
            return (null, errors);
        }

        var problems = new List<string>();
        ConfigValidator.ValidateEcho(runtime.Snapshot.Config, route, policy, "policy", problems);
        return problems.Count == 0 ? (policy, []) : (null, problems);
    }

    public static object? PolicyView(EchoPolicyConfig? policy) => policy is null ? null : new
    {
        codec = policy.Codec switch
        {
            EchoCodec.Lines => "lines",
            EchoCodec.LengthPrefixed16 => "length-prefixed-16",
            EchoCodec.LengthPrefixed32 => "length-prefixed-32",
            EchoCodec.Resp => "resp",
            _ => "raw",
        },
        shadows = policy.Shadows,
        interval = DurationParser.Format(policy.Interval),
        retention = policy.RetentionBytes,
        maxLagBytes = policy.MaxLagBytes,
        maxOutputLag = policy.MaxOutputLag,
        ackTimeout = DurationParser.Format(policy.AckTimeout),
        redundancyFloor = policy.RedundancyFloor,
        zoneDiversity = policy.ZoneDiversity,
        maxMessageBytes = policy.MaxMessageBytes,
        uncomparedResponses = policy.UncomparedResponses,
        failover = policy.Failover,
        stateScope = policy.StateScope == EchoStateScope.Connection ? "connection" : "backend",
    };

    /// <summary>What a policy would cost on this route, from the route's live sessions, before it is applied.</summary>
    private static object Estimate(RelayRuntime runtime, EchoManager echo, RouteConfig route, EchoPolicyConfig policy)
    {
        var time = runtime.TimeProvider;
        var sessions = runtime.Sessions.Values.Where(s => s.RouteName == route.Name).ToList();
        double inRate = 0, outRate = 0;
        long retained = 0;
        foreach (var s in sessions)
        {
            var seconds = Math.Max(1, time.GetElapsedTime(s.StartTimestamp).TotalSeconds);
            inRate += s.BytesIn / seconds;
            outRate += s.BytesOut / seconds;
            retained += Math.Min(s.BytesIn, policy.RetentionBytes);
        }

        var cluster = runtime.Snapshot.Clusters.GetValueOrDefault(route.Cluster);
        var links = echo.Links.ToDictionary(l => l.Endpoint.Id, StringComparer.Ordinal);
        var now = time.GetTimestamp();
        var hosts = (cluster?.Endpoints ?? []).Select(e =>
        {
            links.TryGetValue(e.Id, out var link);
            var available = link is { Connected: true } && e.IsAvailable(now) && echo.NoticeFor(e.Id) is null;
            return new
            {
                endpoint = e.Id,
                region = e.Config.Region,
                zone = e.Config.Zone,
                agent = e.Config.Agent?.ToString(),
                available,
                why = link is null ? "no agent configured" : !link.Connected ? $"agent not connected{(link.LastError is { } err ? $": {err}" : "")}" : !e.IsAvailable(now) ? "endpoint unhealthy or draining" : echo.NoticeFor(e.Id) is not null ? "interruption notice posted" : null,
                shadows = link?.ShadowCount ?? 0,
                cpuPercent = link?.LastHeartbeat?.CpuPercent,
                rttMs = link?.RttMs,
            };
        }).ToList();

        // Digests: one 24-byte entry per message (guess 64 B messages when a codec frames them) or per 4 KiB raw window.
        var digestBytesPerOutByte = policy.Codec == EchoCodec.Raw ? 24.0 / 4096 : 24.0 / 64;
        var perShadow = (inRate + (outRate * digestBytesPerOutByte)) * DatagramOverhead * (1 + 0.25);
        var bandwidth = perShadow * policy.Shadows;
        var warnings = new List<string>();
        var availableHosts = hosts.Count(h => h.available);
        if (availableHosts < policy.Shadows + 1 && policy.Shadows > 0)
        {
            warnings.Add($"{availableHosts} host(s) with an agent are available; {policy.Shadows} shadow(s) per session need at least {policy.Shadows + 1} (the primary is never its own shadow)");
        }

        var overCap = sessions.Count(s => s.BytesIn > policy.RetentionBytes);
        if (overCap > 0)
        {
            warnings.Add($"{overCap} live session(s) have sent more than the retention cap of {policy.RetentionBytes} bytes: they could get no new shadow after a splice");
        }

        return new
        {
            route = route.Name,
            policy = PolicyView(policy),
            sessions = sessions.Count,
            inputBytesPerSecond = Math.Round(inRate),
            outputBytesPerSecond = Math.Round(outRate),
            echoBandwidthBytesPerSecond = Math.Round(bandwidth),
            echoBandwidthBasis = "per shadow: input rate plus digests, +6% datagram headers, +25% Reed-Solomon parity at the default floor (m/k), times shadows",
            relayCpuCores = Math.Round(bandwidth * CpuNanosecondsPerByte / 1e9, 4),
            relayCpuBasis = $"{CpuNanosecondsPerByte} ns per shipped byte (AEAD, FEC, LZ4, log copy; docs/benchmarks.md)",
            echoLogMemoryBytes = retained,
            shipsPerSecondPerSession = Math.Round(1 / policy.Interval.TotalSeconds, 1),
            hosts,
            availableHosts,
            warnings,
        };
    }

    /// <summary>The echo part of a session's API record; null when the session is not echoed.</summary>
    public static object? SessionEcho(EchoManager echo, long id)
    {
        if (!echo.TryGetSession(id, out var spliced))
        {
            return null;
        }

        var e = spliced.Echo;
        return new
        {
            codec = PolicyView(e.Policy),
            inOffset = e.Log.Length,
            logStart = e.Log.Start,
            requests = e.Log.Messages,
            delivered = e.Delivered,
            deliveredUnit = e.DeliveredIsMessages ? "messages" : "bytes",
            canAddShadow = e.Log.CanAddShadow,
            cannotAddShadowReason = e.Log.CannotAddShadowReason,
            shadows = e.Shadows.Select(s =>
            {
                var snap = s.Snapshot();
                return new
                {
                    endpoint = s.Endpoint.Id,
                    state = snap.State.ToString(),
                    reason = snap.Reason,
                    lagBytes = snap.LagBytes,
                    ackedBytes = snap.AckedBytes,
                    ackedMessages = snap.AckedMessages,
                    digests = snap.Digests.ToString(),
                    sinceAckMs = Math.Round(snap.SinceAck.TotalMilliseconds, 1),
                };
            }),
            splices = e.Splices,
        };
    }

    /// <summary>The agent part of an endpoint's API record.</summary>
    public static object? EndpointAgent(EchoManager echo, EndpointState endpoint)
    {
        var link = echo.Links.FirstOrDefault(l => ReferenceEquals(l.Endpoint, endpoint));
        if (link is null)
        {
            return endpoint.Config.Agent is null ? null : new { control = endpoint.Config.Agent.ToString(), connected = false, error = echo.Enabled ? null : "echo is off (no pre-shared key)" };
        }

        return new
        {
            control = link.Control.ToString(),
            connected = link.Connected,
            agentId = link.AgentId,
            error = link.LastError,
            shadows = link.ShadowCount,
            rttMs = link.RttMs,
            heartbeat = link.LastHeartbeat is { } h ? new { cpuPercent = h.CpuPercent, memoryBytes = h.MemoryBytes, memoryTotalBytes = h.MemoryTotalBytes, sessions = h.Sessions, shadowSessions = h.ShadowSessions, at = link.LastHeartbeatAt } : null,
            echoedSessionsHere = echo.SessionsOn(endpoint.Id),
            channel = link.Channel is { IsClosed: false } channel ? ChannelView(channel.GetMetrics()) : null,
        };
    }

    /// <summary>The echo channel's counters (docs/transport.md): the block shape in use, repairs, drops by reason, and each path's state.</summary>
    private static object ChannelView(Transport.Multipath.ChannelMetrics m) => new
    {
        dataShards = m.CurrentDataShards,
        parityShards = m.CurrentParityShards,
        blocksSent = m.BlocksSent,
        fecRecoveredShards = m.FecRecoveredShards,
        retransmittedShards = m.RetransmittedShards,
        drops = m.Drops.Where(d => d.Value > 0).ToDictionary(d => d.Key.ToString(), d => d.Value),
        paths = m.Paths.Select(p => new
        {
            path = p.Path,
            alive = p.Alive,
            rttMs = Math.Round(p.SrttMs, 3),
            jitterMs = Math.Round(p.JitterMs, 3),
            loss = Math.Round(p.LossRate, 4),
            lossForecast = Math.Round(p.LossForecast, 4),
            share = Math.Round(p.Share, 3),
        }),
    };

    private sealed record MigrateRequest(string? Target);

    private sealed record NoticeRequest(DateTimeOffset? At, string? In);
}
