using Prometheus;

namespace Relay.Diagnostics;

/// <summary>
/// The relay's Prometheus metrics, in a registry of its own so that several relays in one process
/// (the functional tests) do not share counters. Byte counters are not touched per read: each
/// session counts its own bytes, and the totals are summed when /metrics is scraped.
/// </summary>
public sealed class RelayMetrics
{
    public RelayMetrics()
    {
        Registry = Metrics.NewCustomRegistry();

        // Process and runtime metrics (memory, GC, threads, CPU) beside the relay's own.
        ProcessMetrics.Register(Registry);
        var factory = Metrics.WithCustomRegistry(Registry);
        SessionsActive = factory.CreateGauge("relay_sessions_active", "Sessions open now.", "route");
        SessionsTotal = factory.CreateCounter("relay_sessions_total", "Sessions accepted and connected upstream.", "route");
        SessionsRejected = factory.CreateCounter("relay_sessions_rejected_total", "Client connections refused before a session started.", "route", "reason");
        SessionsEnded = factory.CreateCounter("relay_sessions_ended_total", "Sessions ended, by reason.", "route", "reason");
        Bytes = factory.CreateCounter("relay_bytes_total", "Bytes relayed: in = client to upstream, out = upstream to client.", "route", "direction");
        ConnectFailures = factory.CreateCounter("relay_upstream_connect_failures_total", "Upstream connects that failed.", "cluster", "endpoint", "reason");
        UpstreamResets = factory.CreateCounter("relay_upstream_resets_total", "Sessions ended by an upstream reset.", "cluster", "endpoint");
        PanicPicks = factory.CreateCounter("relay_cluster_panic_picks_total", "Sessions sent to a passively ejected endpoint because every endpoint of the cluster was ejected.", "cluster");
        SessionDuration = factory.CreateHistogram("relay_session_duration_seconds", "Session duration.", new HistogramConfiguration
        {
            LabelNames = ["route"],
            Buckets = Histogram.ExponentialBuckets(0.001, 4, 12),
        });
        EndpointHealthy = factory.CreateGauge("relay_endpoint_healthy", "1 when the endpoint takes new sessions, 0 otherwise.", "cluster", "endpoint");
        EndpointSessions = factory.CreateGauge("relay_endpoint_sessions_active", "Sessions open now per endpoint.", "cluster", "endpoint");
        ReactorSockets = factory.CreateGauge("relay_l4_reactor_sockets", "Sockets registered with the L4 epoll reactors now (a plain session has two; 0 with Kestrel's socket transport).");
        HealthTransitions = factory.CreateCounter("relay_endpoint_health_transitions_total", "Endpoint health changes.", "cluster", "endpoint", "to");
        ConfigReloads = factory.CreateCounter("relay_config_reloads_total", "Configuration reloads, by result.", "result");
        GcMemory = factory.CreateGauge("relay_gc_memory_bytes", "Managed heap after the last GC: heap, fragmented, committed, and per generation (gen0-2, loh, poh).", "kind");
        GcAllocated = factory.CreateCounter("relay_gc_allocated_bytes_total", "Bytes of managed memory allocated since start; its rate is what makes collections come.");
        GcPause = factory.CreateCounter("relay_gc_pause_seconds_total", "Time the garbage collector has paused the process (every thread stops, so every session stalls), since start.");
        AdminUnauthorized = factory.CreateCounter("relay_admin_unauthorized_total", "Admin requests refused for a missing or wrong token.");

        // L7 (issue 6).
        HttpRequests = factory.CreateCounter("relay_http_requests_total", "HTTP requests proxied, by status class (1xx-5xx, or error when no response was sent).", "route", "status");
        HttpRequestDuration = factory.CreateHistogram("relay_http_request_duration_seconds", "HTTP request duration at the relay, retries included.", new HistogramConfiguration
        {
            LabelNames = ["route"],
            Buckets = Histogram.ExponentialBuckets(0.0001, 4, 10),
        });
        HttpRetries = factory.CreateCounter("relay_http_retries_total", "Upstream attempts retried on another endpoint, by why the previous one failed.", "route", "reason");
        HttpFailures = factory.CreateCounter("relay_http_failures_total", "Requests that failed upstream and were answered with an error, by reason (not_retryable, budget, attempts, no_endpoint, response).", "route", "reason");
        HttpMirror = factory.CreateCounter("relay_http_mirror_total", "Copies for shadows, by result (queued, dropped, skipped_body, sent, error).", "route", "shadow", "result");
        HttpMirrorCompare = factory.CreateCounter("relay_http_mirror_compare_total", "Primary vs shadow comparisons, by result (match, status, headers, body, error).", "route", "shadow", "result");
        HttpShadowConsistent = factory.CreateGauge("relay_http_shadow_consistent", "1 when the shadow's recent responses matched the primary's, 0 when not, -1 while too few were compared.", "route", "shadow");
        HttpAffinitySessions = factory.CreateGauge("relay_http_affinity_sessions", "L7 sessions (affinity keys) remembered now.", "route");
        HttpAffinityMoves = factory.CreateCounter("relay_http_affinity_moves_total", "L7 sessions moved to another endpoint, by target kind (shadow, cluster).", "route", "to");
    }

    public CollectorRegistry Registry { get; }

    public Gauge SessionsActive { get; }

    public Counter SessionsTotal { get; }

    public Counter SessionsRejected { get; }

    public Counter SessionsEnded { get; }

    public Counter Bytes { get; }

    public Counter ConnectFailures { get; }

    public Counter UpstreamResets { get; }

    public Counter PanicPicks { get; }

    public Histogram SessionDuration { get; }

    public Gauge EndpointHealthy { get; }

    public Gauge EndpointSessions { get; }

    public Gauge ReactorSockets { get; }

    public Counter HealthTransitions { get; }

    public Counter ConfigReloads { get; }

    public Counter AdminUnauthorized { get; }

    public Gauge GcMemory { get; }

    public Counter GcPause { get; }

    public Counter GcAllocated { get; }

    public Counter HttpRequests { get; }

    public Histogram HttpRequestDuration { get; }

    public Counter HttpRetries { get; }

    public Counter HttpFailures { get; }

    public Counter HttpMirror { get; }

    public Counter HttpMirrorCompare { get; }

    public Gauge HttpShadowConsistent { get; }

    public Gauge HttpAffinitySessions { get; }

    public Counter HttpAffinityMoves { get; }
}
