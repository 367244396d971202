using Relay.Clusters;
using Relay.Prediction;

namespace Relay.Admin;

/// <summary>Admin API for Relay.Predict in the relay: endpoint scores, migration recommendations, scaling advice.</summary>
internal static class PredictionApi
{
    private const string Off = "prediction is off (set prediction.enabled in the configuration)";

    public static void Map(WebApplication app, RelayRuntime runtime, PredictionService prediction)
    {
        app.MapGet("/api/endpoints/{id}/score", (string id) =>
        {
            var endpoint = runtime.FindEndpoint(id);
            if (endpoint is null)
            {
                return Results.Json(new { error = $"no endpoint \"{id}\"" }, statusCode: StatusCodes.Status404NotFound);
            }

            if (!prediction.Enabled)
            {
                return Results.Json(new { error = Off }, statusCode: StatusCodes.Status409Conflict);
            }

            return Results.Json(new { endpoint = id, cluster = endpoint.ClusterName, score = prediction.ScoreOf(endpoint.ClusterName, endpoint.Id) });
        });

        app.MapGet("/api/recommendations", (int? limit) => Results.Json(prediction.Recommendations(Math.Clamp(limit ?? 100, 1, PredictionService.RecentCapacity))));

        app.MapGet("/api/scaling", () => prediction.Enabled
            ? Results.Json(new { enabled = true, routes = prediction.Scaling() })
            : Results.Json(new { error = Off }, statusCode: StatusCodes.Status409Conflict));
    }

    /// <summary>The <c>score</c> object of an endpoint view: null while prediction is off.</summary>
    public static EndpointScoreView? EndpointScore(PredictionService prediction, EndpointState endpoint) =>
        prediction.Enabled ? prediction.ScoreOf(endpoint.ClusterName, endpoint.Id) : null;
}
