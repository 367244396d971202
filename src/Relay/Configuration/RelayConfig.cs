using System.Collections.Immutable;
using System.Net;

namespace Relay.Configuration;

/// <summary>An immutable, validated snapshot of the whole configuration (STYLE.md 4: sealed records).</summary>
public sealed record RelayConfig
{
    public AdminConfig Admin { get; init; } = new();

    public ShutdownConfig Shutdown { get; init; } = new();

    public TransportTuning Tuning { get; init; } = new();

    public EchoConfig Echo { get; init; } = new();

    public PredictionConfig Prediction { get; init; } = new();

    public ImmutableDictionary<string, RouteConfig> Routes { get; init; } = ImmutableDictionary<string, RouteConfig>.Empty;

    public ImmutableDictionary<string, ClusterConfig> Clusters { get; init; } = ImmutableDictionary<string, ClusterConfig>.Empty;
}

public sealed record AdminConfig
{
    /// <summary>Where the admin API listens. Defaults to 127.0.0.1:9901; null disables it.</summary>
    public IPEndPoint? Listen { get; init; } = new(IPAddress.Loopback, RelayDefaults.AdminPort);

    /// <summary>A file whose first line is the bearer token.</summary>
    public string? TokenFile { get; init; }

    /// <summary>The environment variable holding the bearer token. Defaults to RELAY_ADMIN_TOKEN.</summary>
    public string TokenEnvironmentVariable { get; init; } = RelayDefaults.AdminTokenEnvironmentVariable;
}

public sealed record ShutdownConfig
{
    /// <summary>How long a graceful shutdown waits for live sessions. Defaults to 30 s.</summary>
    public TimeSpan DrainTimeout { get; init; } = RelayDefaults.DrainTimeout;
}

/// <summary>Socket and pipe tuning for L4 listeners and upstream legs. Read at start only.</summary>
public sealed record TransportTuning
{
    /// <summary>Size of one pooled I/O block, the most one socket receive reads. Defaults to 64 KiB.</summary>
    public int BlockBytes { get; init; } = RelayDefaults.BlockBytes;

    /// <summary>Unsent bytes buffered per direction before the reading side is paused. Defaults to 256 KiB.</summary>
    public int MaxBufferedBytes { get; init; } = RelayDefaults.MaxBufferedBytes;

    /// <summary>Run pipe continuations inline on the socket thread. Defaults to true.</summary>
    public bool InlineScheduling { get; init; } = true;

    /// <summary>
    /// Serve L4 routes with the relay's own epoll reactors instead of the runtime's socket engine
    /// (Linux on x86-64; elsewhere the setting is ignored). Defaults to true.
    /// </summary>
    public bool Epoll { get; init; } = true;

    /// <summary>How many epoll reactor threads serve L4 routes; 0 (the default) means one per core.</summary>
    public int EpollReactors { get; init; }
}

public enum LoadBalancingPolicy
{
    PowerOfTwoChoices,
    RoundRobin,
}

public enum ProxyProtocolMode
{
    None,
    V2,
}

public sealed record RouteConfig
{
    public required string Name { get; init; }

    public required IPEndPoint Listen { get; init; }

    public required string Cluster { get; init; }

    /// <summary>Most concurrent sessions on this route; 0 means unlimited. Defaults to 10,000.</summary>
    public int MaxSessions { get; init; } = RelayDefaults.MaxSessionsPerRoute;

    /// <summary>Most concurrent sessions from one client IP address; 0 means unlimited. Defaults to 0.</summary>
    public int MaxSessionsPerClient { get; init; }

    /// <summary>A session with no bytes either way for this long is closed. Defaults to 5 min; zero disables.</summary>
    public TimeSpan IdleTimeout { get; init; } = RelayDefaults.IdleTimeout;

    /// <summary>tcp (L4, the default) or http (L7, issue 6).</summary>
    public RouteProtocol Protocol { get; init; } = RouteProtocol.Tcp;

    /// <summary>The L7 settings; null for a tcp route.</summary>
    public HttpRouteConfig? Http { get; init; }

    /// <summary>The route's echo policy; null when its sessions are not echoed.</summary>
    public EchoPolicyConfig? Echo { get; init; }
}

public sealed record ClusterConfig
{
    public required string Name { get; init; }

    public LoadBalancingPolicy LoadBalancing { get; init; } = LoadBalancingPolicy.PowerOfTwoChoices;

    /// <summary>How long one upstream connect may take. Defaults to 3 s.</summary>
    public TimeSpan ConnectTimeout { get; init; } = RelayDefaults.ConnectTimeout;

    /// <summary>Endpoints tried for one session before it fails. Defaults to 3 (capped at the endpoint count).</summary>
    public int ConnectAttempts { get; init; } = RelayDefaults.ConnectAttempts;

    public ProxyProtocolMode ProxyProtocol { get; init; } = ProxyProtocolMode.None;

    public ActiveHealthConfig ActiveHealth { get; init; } = new();

    public PassiveHealthConfig PassiveHealth { get; init; } = new();

    public ImmutableDictionary<string, EndpointConfig> Endpoints { get; init; } = ImmutableDictionary<string, EndpointConfig>.Empty;
}

public sealed record EndpointConfig
{
    public required string Id { get; init; }

    public required DnsEndPoint Address { get; init; }

    public string? Region { get; init; }

    public string? Zone { get; init; }

    /// <summary>The control address of the agent beside this endpoint; null when it runs none (it cannot be a shadow).</summary>
    public IPEndPoint? Agent { get; init; }
}

public sealed record ActiveHealthConfig
{
    public bool Enabled { get; init; } = true;

    public TimeSpan Interval { get; init; } = RelayDefaults.ProbeInterval;

    public TimeSpan Timeout { get; init; } = RelayDefaults.ProbeTimeout;

    /// <summary>Consecutive successful probes that make an unhealthy endpoint healthy. Defaults to 2.</summary>
    public int HealthyThreshold { get; init; } = 2;

    /// <summary>Consecutive failed probes that make a healthy endpoint unhealthy. Defaults to 3.</summary>
    public int UnhealthyThreshold { get; init; } = 3;
}

public sealed record PassiveHealthConfig
{
    public bool Enabled { get; init; } = true;

    /// <summary>Consecutive connect failures or upstream resets that eject an endpoint. Defaults to 3.</summary>
    public int FailureThreshold { get; init; } = 3;

    /// <summary>How long an ejected endpoint gets no new sessions. Defaults to 10 s.</summary>
    public TimeSpan EjectionTime { get; init; } = RelayDefaults.EjectionTime;
}

/// <summary>The relay's side of echo (docs/echo.md): how it reaches agents.</summary>
public sealed record EchoConfig
{
    /// <summary>File holding the pre-shared key shared with the agents (at least 32 bytes).</summary>
    public string? PskFile { get; init; }

    /// <summary>Environment variable holding the pre-shared key when no file is given.</summary>
    public string PskEnvironmentVariable { get; init; } = RelayDefaults.EchoPskEnvironmentVariable;

    /// <summary>Local IP addresses of the echo paths, one UDP socket each per agent; the path count is their number.</summary>
    public ImmutableArray<IPAddress> Paths { get; init; } = [IPAddress.Loopback, IPAddress.Loopback];

    /// <summary>How long a TAKEOVER may wait for the agent's answer before the splice tries the next shadow or rolls back.</summary>
    public TimeSpan TakeoverTimeout { get; init; } = RelayDefaults.TakeoverTimeout;

    /// <summary>Sessions migrated at the same time when an endpoint is drained or noticed.</summary>
    public int MaxConcurrentMigrations { get; init; } = 16;

    /// <summary>
    /// Whether the echo channels' parity covers the loss of a whole path (docs/transport.md section 6):
    /// after a path has failed (the default), always, or never.
    /// </summary>
    public Relay.Transport.Multipath.PathLossParity PathLossParity { get; init; } = Relay.Transport.Multipath.PathLossParity.AfterPathFailure;
}

/// <summary>
/// Relay.Predict wired into the relay (docs/prediction.md "Wired into the relay"): endpoint scores,
/// migration recommendations executed through echo, scaling advice. Read at start only.
/// </summary>
public sealed record PredictionConfig
{
    /// <summary>Score endpoints and move echoed sessions on the recommendations (replacing the
    /// health-based evacuation). Defaults to false.</summary>
    public bool Enabled { get; init; }

    /// <summary>Signal collection and the liveness pass. Defaults to 100 ms (10 Hz).</summary>
    public TimeSpan Interval { get; init; } = TimeSpan.FromMilliseconds(100);

    /// <summary>The full scoring pass and migration planning. Defaults to 1 s.</summary>
    public TimeSpan EvaluateInterval { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>The horizon a score's probability refers to. Defaults to 30 s.</summary>
    public TimeSpan Horizon { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Score below which an endpoint is evacuated (after a 2 s dwell for soft reasons). Defaults to 0.5.</summary>
    public double Threshold { get; init; } = 0.5;

    /// <summary>Score above which an evacuated endpoint serves again (hysteresis). Defaults to 0.8.</summary>
    public double RestoreAbove { get; init; } = 0.8;

    /// <summary>Sessions one endpoint carries at 100% (load score and scaling). Defaults to 100.</summary>
    public double EndpointCapacity { get; init; } = 100;

    /// <summary>Agent-reported CPU (fraction of the host) held against this limit. Defaults to 0.95.</summary>
    public double CpuLimit { get; init; } = 0.95;

    /// <summary>Global token bucket of the planner. Defaults to 50/s (burst twice that).</summary>
    public double MaxMigrationsPerSecond { get; init; } = 50;

    /// <summary>Also execute proactive moves (nothing wrong, a much better endpoint). Defaults to false.</summary>
    public bool Optimise { get; init; }
}

/// <summary>The codec that sets a route's splice points.</summary>
public enum EchoCodec
{
    Raw,
    Lines,
    LengthPrefixed16,
    LengthPrefixed32,
    Resp,
}

/// <summary>A route's echo policy: which sessions are echoed, how often, to how many shadows.</summary>
public sealed record EchoPolicyConfig
{
    public EchoCodec Codec { get; init; } = EchoCodec.Raw;

    /// <summary>Shadows per session.</summary>
    public int Shadows { get; init; } = 1;

    /// <summary>How often a session's new input is shipped (1 ms to 60 s).</summary>
    public TimeSpan Interval { get; init; } = RelayDefaults.EchoInterval;

    /// <summary>Input kept per session from its start; past it the log trims to the shadows' acks and gets no new shadows.</summary>
    public long RetentionBytes { get; init; } = RelayDefaults.EchoRetentionBytes;

    /// <summary>A shadow further behind than this is Syncing, not Ready.</summary>
    public long MaxLagBytes { get; init; } = RelayDefaults.EchoMaxLagBytes;

    /// <summary>
    /// A shadow whose output trails what the primary delivered by more than this (messages with a
    /// message codec, bytes with raw) is Syncing, not Ready; 0 turns the check off. Null: 1,024
    /// messages, or <see cref="MaxLagBytes"/> bytes with the raw codec.
    /// </summary>
    public long? MaxOutputLag { get; init; }

    /// <summary>A shadow without acks for this long is Lost.</summary>
    public TimeSpan AckTimeout { get; init; } = RelayDefaults.EchoAckTimeout;

    /// <summary>
    /// Fewest parity shards per block on the echo channels to this route's shadows, whatever the
    /// measured loss (adaptive redundancy only raises it). Applies to an agent's channel from its
    /// next connection; the highest floor among routes wins.
    /// </summary>
    public int RedundancyFloor { get; init; } = 1;

    /// <summary>Prefer shadows in another zone (or region) than the primary.</summary>
    public bool ZoneDiversity { get; init; } = true;

    /// <summary>Largest message the codec accepts; 0 picks the codec's default within the pipe's buffer.</summary>
    public int MaxMessageBytes { get; init; }

    /// <summary>
    /// Responses at a session's start whose digests are not compared: handshake replies that name
    /// the host or list things in a host-specific order (redis-cli's COMMAND DOCS, HELLO). The shadow
    /// still counts them, so splices stay exact.
    /// </summary>
    public int UncomparedResponses { get; init; }

    /// <summary>Whether a failing primary is replaced by a shadow at once (otherwise only planned splices run).</summary>
    public bool Failover { get; init; } = true;

    /// <summary>Where the backend keeps a session's state; decides whether a former host may take a new shadow.</summary>
    public EchoStateScope StateScope { get; init; } = EchoStateScope.Backend;
}

/// <summary>Where a backend keeps a session's state, which decides where a replay from offset 0 is safe.</summary>
public enum EchoStateScope
{
    /// <summary>State outlives the connection (Redis keys): an endpoint that served the session never gets it again.</summary>
    Backend,

    /// <summary>State lives and dies with the connection (game servers, the sample server): any endpoint but the primary may take a new shadow.</summary>
    Connection,
}
