using Prometheus;
using Relay.Clusters;
using Relay.Diagnostics;
using Relay.Echo.Splice;
using Relay.L4;
using Relay.L7;
using Relay.Prediction;

namespace Relay.Admin;

/// <summary>The admin REST API: read-only views of endpoints and sessions, health, readiness and metrics.</summary>
internal static class AdminApi
{
    public static void Map(WebApplication app, RelayRuntime runtime, L4ListenerManager listeners, L7Host l7, EchoManager echo, PredictionService prediction, AdminToken token, ILogger logger)
    {
        // Health and readiness stay open so that a load balancer or an orchestrator can probe them
        // without the token; everything else needs it.
        app.Use(async (context, next) =>
        {
            var path = context.Request.Path;
            if (path.StartsWithSegments("/healthz") || path.StartsWithSegments("/readyz"))
            {
                await next(context).ConfigureAwait(false);
                return;
            }

            var header = context.Request.Headers.Authorization.ToString();
            string? problem = null;
            if (header.Length == 0)
            {
                problem = "no Authorization header";
            }
            else if (!header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
            {
                problem = "Authorization is not a Bearer token";
            }
            else if (!token.Matches(header.AsSpan(7).Trim()))
            {
                problem = "wrong token";
            }

            if (problem is not null)
            {
                runtime.Metrics.AdminUnauthorized.Inc();
                RelayLog.AdminUnauthorized(logger, context.Request.Method, path.ToString(), context.Connection.RemoteIpAddress?.ToString(), problem);
                context.Response.Headers.WWWAuthenticate = "Bearer";
                await AdminRoutes.Error(StatusCodes.Status401Unauthorized, $"unauthorized: {problem}").ExecuteAsync(context).ConfigureAwait(false);
                return;
            }

            await next(context).ConfigureAwait(false);
        });

        app.Get("/healthz", _ => Results.Text("ok\n"));
        app.Get("/readyz", _ =>
        {
            var problems = Readiness(runtime, listeners, l7);
            return problems.Count == 0
                ? Results.Text("ready\n")
                : Results.Text("not ready:\n" + string.Join("\n", problems) + "\n", statusCode: StatusCodes.Status503ServiceUnavailable);
        });

        app.Get("/api/routes", _ =>
        {
            var bound = listeners.BoundAddresses.Concat(l7.BoundAddresses).ToDictionary();
            return runtime.Snapshot.Config.Routes.Values.OrderBy(r => r.Name, StringComparer.Ordinal).Select(r => new RouteView(
                r.Name,
                r.Protocol == Configuration.RouteProtocol.Http ? "http" : "tcp",
                bound.TryGetValue(r.Name, out var address) ? address.ToString() : null,
                r.Cluster,
                r.MaxSessions,
                r.MaxSessionsPerClient,
                r.IdleTimeout.TotalSeconds,
                runtime.Sessions.Values.Count(s => s.RouteName == r.Name))).ToList();
        });

        app.Get("/api/endpoints", _ =>
        {
            var now = runtime.TimeProvider.GetTimestamp();
            return runtime.Snapshot.Clusters.Values.OrderBy(c => c.Name, StringComparer.Ordinal)
                .SelectMany(c => c.Endpoints.Select(e => EndpointView(e, now, echo, prediction))).ToList();
        });

        app.Get("/api/endpoints/{id}", context =>
        {
            var id = context.Route("id");
            var endpoint = runtime.FindEndpoint(id);
            return endpoint is null
                ? AdminRoutes.Error(StatusCodes.Status404NotFound, $"no endpoint \"{id}\"")
                : AdminRoutes.Json(EndpointView(endpoint, runtime.TimeProvider.GetTimestamp(), echo, prediction));
        });

        app.Get("/api/sessions", context =>
        {
            if (!context.TryQueryInt32("limit", 1000, 1, 100_000, out var limit, out var error))
            {
                return error;
            }

            var (route, endpoint) = (context.Query("route"), context.Query("endpoint"));
            var sessions = runtime.Sessions.Values
                .Where(s => (route is null || s.RouteName == route) && (endpoint is null || s.Endpoint?.Id == endpoint))
                .OrderBy(s => s.Id)
                .Take(limit);
            return sessions.Select(s => SessionView(s, runtime.TimeProvider, echo)).ToList();
        });

        app.Get("/api/sessions/{id:long}", context =>
        {
            var id = context.RouteInt64("id");
            return runtime.Sessions.TryGetValue(id, out var session)
                ? AdminRoutes.Json(SessionView(session, runtime.TimeProvider, echo))
                : AdminRoutes.Error(StatusCodes.Status404NotFound, $"no live session {id}");
        });

        // L7 (issue 6): per-route request, retry, affinity and mirror state, and the L7 sessions.
        app.Get("/api/l7/routes", _ => l7.RouteViews());
        app.Get("/api/l7/routes/{name}", context => context.Route("name") is var name && l7.RouteView(name) is { } view
            ? AdminRoutes.Json(view)
            : AdminRoutes.Error(StatusCodes.Status404NotFound, $"no HTTP route \"{name}\""));
        app.Get("/api/l7/sessions", context => context.TryQueryInt32("limit", 1000, 1, 100_000, out var limit, out var error)
            ? l7.SessionViews(context.Query("route"), context.Query("endpoint"), limit)
            : error);

        // Drain: the endpoint takes no new sessions (L4) and its L7 sessions move on their next request.
        // With echo, the endpoint's echoed sessions also move to their shadows now.
        app.Post("/api/endpoints/{id}/drain", context => SetDraining(runtime, echo, prediction, context.Route("id"), true));
        app.Post("/api/endpoints/{id}/undrain", context => SetDraining(runtime, echo, prediction, context.Route("id"), false));
        EchoApi.Map(app, runtime, echo);
        PredictionApi.Map(app, runtime, prediction);

        app.MapMetrics("/metrics", runtime.Metrics.Registry);
    }

    private static IResult SetDraining(RelayRuntime runtime, EchoManager echo, PredictionService prediction, string id, bool draining)
    {
        var endpoint = runtime.FindEndpoint(id);
        if (endpoint is null)
        {
            return AdminRoutes.Error(StatusCodes.Status404NotFound, $"no endpoint \"{id}\"");
        }

        endpoint.Draining = draining;
        var moving = draining ? echo.StartEvacuation(endpoint, SpliceTrigger.Drain) : 0;
        return AdminRoutes.Json(new DrainView(EndpointView(endpoint, runtime.TimeProvider.GetTimestamp(), echo, prediction), moving));
    }

    internal static List<string> Readiness(RelayRuntime runtime, L4ListenerManager listeners, L7Host l7)
    {
        var problems = new List<string>();
        var bound = listeners.BoundAddresses.Concat(l7.BoundAddresses).ToDictionary();
        var snapshot = runtime.Snapshot;
        var now = runtime.TimeProvider.GetTimestamp();
        foreach (var route in snapshot.Config.Routes.Values.OrderBy(r => r.Name, StringComparer.Ordinal))
        {
            if (!bound.ContainsKey(route.Name))
            {
                problems.Add($"route {route.Name}: not listening");
            }

            if (snapshot.Clusters.TryGetValue(route.Cluster, out var cluster) && !cluster.Endpoints.Any(e => e.IsAvailable(now)))
            {
                problems.Add($"route {route.Name}: no healthy endpoint in cluster {cluster.Name}");
            }
        }

        return problems;
    }

    private static EndpointView EndpointView(EndpointState e, long now, EchoManager echo, PredictionService prediction) => new(
        e.Id,
        e.ClusterName,
        $"{e.Config.Address.Host}:{e.Config.Address.Port}",
        e.Config.Region,
        e.Config.Zone,
        e.Health(now) == EndpointHealth.Healthy ? "healthy" : "unhealthy",
        e.ActiveHealthy,
        e.IsEjected(now),
        e.Draining,
        e.PredictedUnstable,
        e.ActiveSessions,
        e.TotalSessions,
        e.ConnectFailures,
        e.Resets,
        e.LastProbeAt,
        e.LastProbeError,
        echo.NoticeFor(e.Id),
        EchoApi.EndpointAgent(echo, e),
        PredictionApi.EndpointScore(prediction, e));

    private static SessionView SessionView(L4Session s, TimeProvider time, EchoManager echo) => new(
        s.Id,
        s.RouteName,
        s.ClientAddress?.ToString(),
        s.Endpoint?.Id,
        s.Upstream?.RemoteEndPoint?.ToString(),
        s.StartedAt,
        time.GetElapsedTime(s.StartTimestamp).TotalSeconds,
        time.GetElapsedTime(s.LastActivityTimestamp).TotalSeconds,
        s.BytesIn,
        s.BytesOut,
        EchoApi.SessionEcho(echo, s.Id));
}
