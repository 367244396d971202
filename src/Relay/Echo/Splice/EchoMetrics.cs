using Prometheus;
using Relay.Diagnostics;

namespace Relay.Echo.Splice;

/// <summary>Echo and splice metrics, in the relay's registry.</summary>
internal sealed class EchoMetrics
{
    public EchoMetrics(RelayMetrics metrics)
    {
        var factory = Prometheus.Metrics.WithCustomRegistry(metrics.Registry);
        Splices = factory.CreateCounter("relay_splices_total", "Splices by trigger and result (spliced, rolled_back, lost).", "route", "trigger", "result");
        Blackout = factory.CreateHistogram("relay_splice_blackout_seconds", "Time from pausing a session's pumps to resuming them on the new upstream (or the old one after a rollback).", new HistogramConfiguration
        {
            LabelNames = ["route"],
            Buckets = Histogram.ExponentialBuckets(0.0001, 2, 16),
        });
        Takeovers = factory.CreateCounter("relay_takeover_failures_total", "TAKEOVER attempts that failed, by reason (refused, timeout, error).", "endpoint", "reason");
        ShadowTransitions = factory.CreateCounter("relay_shadow_transitions_total", "Shadow state changes.", "route", "to");
        Shadows = factory.CreateGauge("relay_shadows", "Shadows of live sessions now, by state.", "route", "state");
        EchoBytes = factory.CreateCounter("relay_echo_bytes_total", "Session input bytes shipped to agents.", "endpoint");
        EchoFramesDropped = factory.CreateCounter("relay_echo_frames_dropped_total", "Frames from agents dropped as malformed or unexpected.", "endpoint");
        AgentConnected = factory.CreateGauge("relay_agent_connected", "1 while the relay's echo connection to the endpoint's agent is up.", "endpoint");
        AgentCpu = factory.CreateGauge("relay_agent_cpu_percent", "The agent's process CPU from its last heartbeat.", "endpoint");
        SessionsLost = factory.CreateCounter("relay_echo_sessions_lost_total", "Echoed sessions closed because the primary failed and no shadow could take over.", "route");
    }

    public Counter Splices { get; }

    public Histogram Blackout { get; }

    public Counter Takeovers { get; }

    public Counter ShadowTransitions { get; }

    public Gauge Shadows { get; }

    public Counter EchoBytes { get; }

    public Counter EchoFramesDropped { get; }

    public Gauge AgentConnected { get; }

    public Gauge AgentCpu { get; }

    public Counter SessionsLost { get; }
}
