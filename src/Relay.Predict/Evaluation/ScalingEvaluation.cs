using Relay.Predict.Planning;

namespace Relay.Predict.Evaluation;

/// <summary>How a scaling policy did on a demand series.</summary>
public sealed record ScalingResult(string Series, string Policy, int LeadSteps, int Steps, double UnderProvisionedShare, double MeanEndpoints, int ScaleActions);

/// <summary>
/// Replays a demand series (concurrent sessions per step) through a scaling policy: scale-out
/// takes effect after the lead time (provisioning), scale-in at once. A step is
/// under-provisioned when demand exceeds the running endpoints at 100%. Measured on the second
/// half; the first half warms the forecaster up.
/// </summary>
public static class ScalingEvaluation
{
    public static IReadOnlyList<ScalingResult> Evaluate(string name, IReadOnlyList<double> demand, double stepSeconds, int seasonLength, int leadSteps, double capacityPerEndpoint)
    {
        ArgumentNullException.ThrowIfNull(demand);
        var options = new ScalingOptions
        {
            StepSeconds = stepSeconds,
            SeasonLength = seasonLength,
            LeadTimeSeconds = leadSteps * stepSeconds,
            CapacityPerEndpoint = capacityPerEndpoint,
            TargetUtilisation = 0.7,
            ScaleInStabilisationSeconds = 4 * stepSeconds,
            MinEndpoints = 1,
            MaxEndpoints = 100_000,
        };
        var advisor = new ScalingAdvisor(options);
        return
        [
            Replay(name, "Relay (Holt-Winters, lead time, stabilised scale-in)", demand, leadSteps, capacityPerEndpoint, (t, y, current) =>
            {
                advisor.Observe(t * stepSeconds, y, y);

                // The step closes on the next observation; observe its last instant too.
                advisor.Observe(((t + 1) * stepSeconds) - 1e-6, y, y);
                return advisor.Recommend(current).Desired;
            }),
            Replay(name, "Reactive (observed load at 70%, no stabilisation)", demand, leadSteps, capacityPerEndpoint,
                (t, y, current) => Math.Max(1, (int)Math.Ceiling(y / (capacityPerEndpoint * 0.7)))),

            // The same reactive rule with more headroom, for a comparison at similar cost.
            Replay(name, "Reactive (observed load at 55%, no stabilisation)", demand, leadSteps, capacityPerEndpoint,
                (t, y, current) => Math.Max(1, (int)Math.Ceiling(y / (capacityPerEndpoint * 0.55)))),
        ];
    }

    private static ScalingResult Replay(string name, string policy, IReadOnlyList<double> demand, int leadSteps, double capacity, Func<int, double, int, int> decide)
    {
        var n = demand.Count;
        var half = n / 2;
        var running = Math.Max(1, (int)Math.Ceiling(demand[0] / (capacity * 0.7)));
        var pending = new int[n + leadSteps + 1];
        int under = 0, actions = 0, measured = 0;
        double endpointSteps = 0;
        for (var t = 0; t < n; t++)
        {
            running += pending[t];
            var y = demand[t];
            if (t >= half)
            {
                measured++;
                endpointSteps += running;
                under += y > running * capacity ? 1 : 0;
            }

            var inFlight = 0;
            for (var k = t + 1; k <= t + leadSteps && k < pending.Length; k++)
            {
                inFlight += pending[k];
            }

            var desired = decide(t, y, running + inFlight);
            if (desired > running + inFlight)
            {
                pending[t + leadSteps] += desired - running - inFlight;
                actions += t >= half ? 1 : 0;
            }
            else if (desired < running)
            {
                running = desired;
                actions += t >= half ? 1 : 0;
            }
        }

        return new ScalingResult(name, policy, leadSteps, measured, (double)under / measured, endpointSteps / measured, actions);
    }
}
