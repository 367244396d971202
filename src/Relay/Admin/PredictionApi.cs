using Relay.Clusters;
using Relay.Prediction;

namespace Relay.Admin;

/// <summary>Admin API for Relay.Predict in the relay: endpoint scores, migration recommendations, scaling advice.</summary>
internal static class PredictionApi
{
    private const string Off = "prediction is off (set prediction.enabled in the configuration)";

    public static void Map(WebApplication app, RelayRuntime runtime, PredictionService prediction)
    {
        app.Get("/api/endpoints/{id}/score", context =>
        {
            var id = context.Route("id");
            var endpoint = runtime.FindEndpoint(id);
            if (endpoint is null)
            {
                return AdminRoutes.Error(StatusCodes.Status404NotFound, $"no endpoint \"{id}\"");
            }

            if (!prediction.Enabled)
            {
                return AdminRoutes.Error(StatusCodes.Status409Conflict, Off);
            }

            return AdminRoutes.Json(new EndpointScoreAnswer(id, endpoint.ClusterName, prediction.ScoreOf(endpoint.ClusterName, endpoint.Id)));
        });

        app.Get("/api/recommendations", context => context.TryQueryInt32("limit", 100, 1, PredictionService.RecentCapacity, out var limit, out var error)
            ? AdminRoutes.Json(prediction.Recommendations(limit))
            : error);

        app.Get("/api/scaling", _ => prediction.Enabled
            ? AdminRoutes.Json(new ScalingAnswer(true, prediction.Scaling()))
            : AdminRoutes.Error(StatusCodes.Status409Conflict, Off));
    }

    /// <summary>The <c>score</c> object of an endpoint view: null while prediction is off.</summary>
    public static EndpointScoreView? EndpointScore(PredictionService prediction, EndpointState endpoint) =>
        prediction.Enabled ? prediction.ScoreOf(endpoint.ClusterName, endpoint.Id) : null;
}
