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
                var (body, error) = await request.ReadJsonAsync(AdminJsonContext.Default.MigrateRequest).ConfigureAwait(false);
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

            return AdminRoutes.Json(
                new MigrateView(id, outcome.Spliced, outcome.From, outcome.To, outcome.BlackoutMs, outcome.Failure),
                outcome.Spliced ? StatusCodes.Status200OK : StatusCodes.Status409Conflict);
        });

        app.Map("/api/endpoints/{id}/notice", [HttpMethods.Post], async context =>
        {
            var (id, request) = (context.Route("id"), context.Request);
            var endpoint = runtime.FindEndpoint(id);
            if (endpoint is null)
            {
                return AdminRoutes.Error(StatusCodes.Status404NotFound, $"no endpoint \"{id}\"");
            }

            var (body, error) = await request.ReadJsonAsync(AdminJsonContext.Default.NoticeRequest).ConfigureAwait(false);
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
            return AdminRoutes.Json(new NoticeView(id, at, true, moving), StatusCodes.Status202Accepted);
        });

        app.Get("/api/echo-policies", _ => runtime.Snapshot.Config.Routes.Values
            .Where(r => r.Protocol == RouteProtocol.Tcp)
            .OrderBy(r => r.Name, StringComparer.Ordinal)
            .Select(r => new RoutePolicyView(r.Name, PolicyView(echo.PolicyFor(r)))).ToList());

        app.Get("/api/echo-policies/{route}", context => context.Route("route") is var route && runtime.Snapshot.Config.Routes.TryGetValue(route, out var r)
            ? AdminRoutes.Json(new RoutePolicyView(route, PolicyView(echo.PolicyFor(r))))
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
                return AdminRoutes.Json(new ErrorsView(errors), StatusCodes.Status400BadRequest);
            }

            echo.SetPolicy(route, policy);
            return AdminRoutes.Json(new PolicyUpdateView(route, PolicyView(policy), "sessions that start from now on; live sessions keep the policy they started with"));
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
                    return AdminRoutes.Json(new ErrorsView(errors), StatusCodes.Status400BadRequest);
                }

                policy = proposed;
            }

            return policy is null
                ? AdminRoutes.Error(StatusCodes.Status404NotFound, $"route \"{route}\" has no echo policy; POST one to this address to estimate it")
                : AdminRoutes.Json(Estimate(runtime, echo, r, policy));
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

    public static EchoPolicyView? PolicyView(EchoPolicyConfig? policy) => policy is null ? null : new(
        policy.Codec switch
        {
            EchoCodec.Lines => "lines",
            EchoCodec.LengthPrefixed16 => "length-prefixed-16",
            EchoCodec.LengthPrefixed32 => "length-prefixed-32",
            EchoCodec.Resp => "resp",
            _ => "raw",
        },
        policy.Shadows,
        DurationParser.Format(policy.Interval),
        policy.RetentionBytes,
        policy.MaxLagBytes,
        policy.MaxOutputLag,
        DurationParser.Format(policy.AckTimeout),
        policy.RedundancyFloor,
        policy.ZoneDiversity,
        policy.MaxMessageBytes,
        policy.UncomparedResponses,
        policy.Failover,
        policy.StateScope == EchoStateScope.Connection ? "connection" : "backend");

    /// <summary>What a policy would cost on this route, from the route's live sessions, before it is applied.</summary>
    private static EstimateView Estimate(RelayRuntime runtime, EchoManager echo, RouteConfig route, EchoPolicyConfig policy)
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
            return new EstimateHostView(
                e.Id,
                e.Config.Region,
                e.Config.Zone,
                e.Config.Agent?.ToString(),
                available,
                link is null ? "no agent configured" : !link.Connected ? $"agent not connected{(link.LastError is { } err ? $": {err}" : "")}" : !e.IsAvailable(now) ? "endpoint unhealthy or draining" : echo.NoticeFor(e.Id) is not null ? "interruption notice posted" : null,
                link?.ShadowCount ?? 0,
                link?.LastHeartbeat?.CpuPercent,
                link?.RttMs);
        }).ToList();

        // Digests: one 24-byte entry per message (guess 64 B messages when a codec frames them) or per 4 KiB raw window.
        var digestBytesPerOutByte = policy.Codec == EchoCodec.Raw ? 24.0 / 4096 : 24.0 / 64;
        var perShadow = (inRate + (outRate * digestBytesPerOutByte)) * DatagramOverhead * (1 + 0.25);
        var bandwidth = perShadow * policy.Shadows;
        var warnings = new List<string>();
        var availableHosts = hosts.Count(h => h.Available);
        if (availableHosts < policy.Shadows + 1 && policy.Shadows > 0)
        {
            warnings.Add($"{availableHosts} host(s) with an agent are available; {policy.Shadows} shadow(s) per session need at least {policy.Shadows + 1} (the primary is never its own shadow)");
        }

        var overCap = sessions.Count(s => s.BytesIn > policy.RetentionBytes);
        if (overCap > 0)
        {
            warnings.Add($"{overCap} live session(s) have sent more than the retention cap of {policy.RetentionBytes} bytes: they could get no new shadow after a splice");
        }

        return new EstimateView(
            route.Name,
            PolicyView(policy),
            sessions.Count,
            Math.Round(inRate),
            Math.Round(outRate),
            Math.Round(bandwidth),
            "per shadow: input rate plus digests, +6% datagram headers, +25% Reed-Solomon parity at the default floor (m/k), times shadows",
            Math.Round(bandwidth * CpuNanosecondsPerByte / 1e9, 4),
            $"{CpuNanosecondsPerByte} ns per shipped byte (AEAD, FEC, LZ4, log copy; docs/benchmarks.md)",
            retained,
            Math.Round(1 / policy.Interval.TotalSeconds, 1),
            hosts,
            availableHosts,
            warnings);
    }

    /// <summary>The echo part of a session's API record; null when the session is not echoed.</summary>
    public static SessionEchoView? SessionEcho(EchoManager echo, long id)
    {
        if (!echo.TryGetSession(id, out var spliced))
        {
            return null;
        }

        var e = spliced.Echo;
        return new SessionEchoView(
            PolicyView(e.Policy),
            e.Log.Length,
            e.Log.Start,
            e.Log.Messages,
            e.Delivered,
            e.DeliveredIsMessages ? "messages" : "bytes",
            e.Log.CanAddShadow,
            e.Log.CannotAddShadowReason,
            [.. e.Shadows.Select(s =>
            {
                var snap = s.Snapshot();
                return new EchoShadowView(
                    s.Endpoint.Id,
                    snap.State.ToString(),
                    snap.Reason,
                    snap.LagBytes,
                    snap.AckedBytes,
                    snap.AckedMessages,
                    snap.Digests.ToString(),
                    Math.Round(snap.SinceAck.TotalMilliseconds, 1));
            })],
            e.Splices);
    }

    /// <summary>The agent part of an endpoint's API record.</summary>
    public static EndpointAgentView? EndpointAgent(EchoManager echo, EndpointState endpoint)
    {
        var link = echo.Links.FirstOrDefault(l => ReferenceEquals(l.Endpoint, endpoint));
        if (link is null)
        {
            return endpoint.Config.Agent is null ? null : new(endpoint.Config.Agent.ToString(), false, null, echo.Enabled ? null : "echo is off (no pre-shared key)", 0, null, null, 0, null);
        }

        return new EndpointAgentView(
            link.Control.ToString(),
            link.Connected,
            link.AgentId,
            link.LastError,
            link.ShadowCount,
            link.RttMs,
            link.LastHeartbeat is { } h ? new HeartbeatView(h.CpuPercent, h.MemoryBytes, h.MemoryTotalBytes, h.Sessions, h.ShadowSessions, link.LastHeartbeatAt) : null,
            echo.SessionsOn(endpoint.Id),
            link.Channel is { IsClosed: false } channel ? ChannelView(channel.GetMetrics()) : null);
    }

    /// <summary>The echo channel's counters (docs/transport.md): the block shape in use, repairs, drops by reason, and each path's state.</summary>
    private static ChannelView ChannelView(Transport.Multipath.ChannelMetrics m) => new(
        m.CurrentDataShards,
        m.CurrentParityShards,
        m.BlocksSent,
        m.FecRecoveredShards,
        m.RetransmittedShards,
        m.Drops.Where(d => d.Value > 0).ToDictionary(d => d.Key.ToString(), d => d.Value),
        [.. m.Paths.Select(p => new ChannelPathView(
            p.Path,
            p.Alive,
            Math.Round(p.SrttMs, 3),
            Math.Round(p.JitterMs, 3),
            Math.Round(p.LossRate, 4),
            Math.Round(p.LossForecast, 4),
            Math.Round(p.Share, 3)))]);
}
