using System.Text.Json;
using System.Text.Json.Serialization;
using Relay.Echo.Splice;
using Relay.L7.Mirroring;
using Relay.Prediction;

namespace Relay.Admin;

// The admin API's answers. Each is a record so that System.Text.Json's source generator can write
// it without reflection: the relay is published with Native AOT (docs/operations.md). Property names
// become camelCase on the wire (JsonSerializerDefaults.Web), in the order declared here.

internal sealed record ErrorView(string Error);

internal sealed record ErrorsView(IReadOnlyList<string> Errors);

internal sealed record RouteView(
    string Name,
    string Protocol,
    string? Listen,
    string Cluster,
    int MaxSessions,
    int MaxSessionsPerClient,
    double IdleTimeoutSeconds,
    int ActiveSessions);

internal sealed record EndpointView(
    string Id,
    string Cluster,
    string Address,
    string? Region,
    string? Zone,
    string Health,
    bool ProbesPassing,
    bool Ejected,
    bool Draining,
    bool PredictedUnstable,
    int ActiveSessions,
    long TotalSessions,
    long ConnectFailures,
    long Resets,
    DateTimeOffset? LastProbeAt,
    string? LastProbeError,
    DateTimeOffset? Notice,
    EndpointAgentView? Agent,
    EndpointScoreView? Score);

internal sealed record DrainView(EndpointView Endpoint, int MovingEchoedSessions);

internal sealed record SessionView(
    long Id,
    string Route,
    string? Client,
    string? Endpoint,
    string? Upstream,
    DateTimeOffset StartedAt,
    double DurationSeconds,
    double IdleSeconds,
    long BytesIn,
    long BytesOut,
    SessionEchoView? Echo);

internal sealed record SessionEchoView(
    EchoPolicyView? Codec,
    long InOffset,
    long LogStart,
    long Requests,
    long Delivered,
    string DeliveredUnit,
    bool CanAddShadow,
    string? CannotAddShadowReason,
    List<EchoShadowView> Shadows,
    SpliceRecord[] Splices);

internal sealed record EchoShadowView(
    string Endpoint,
    string State,
    string Reason,
    long LagBytes,
    long AckedBytes,
    long AckedMessages,
    string Digests,
    double SinceAckMs);

internal sealed record EndpointAgentView(
    string Control,
    bool Connected,
    string? AgentId,
    string? Error,
    int Shadows,
    double? RttMs,
    HeartbeatView? Heartbeat,
    int EchoedSessionsHere,
    ChannelView? Channel);

internal sealed record HeartbeatView(double CpuPercent, long MemoryBytes, long MemoryTotalBytes, int Sessions, int ShadowSessions, DateTimeOffset? At);

internal sealed record ChannelView(
    int DataShards,
    int ParityShards,
    long BlocksSent,
    long FecRecoveredShards,
    long RetransmittedShards,
    Dictionary<string, long> Drops,
    List<ChannelPathView> Paths);

internal sealed record ChannelPathView(int Path, bool Alive, double RttMs, double JitterMs, double Loss, double LossForecast, double Share);

internal sealed record MigrateView(long Session, bool Moved, string? From, string? To, double? BlackoutMs, string? Error);

internal sealed record NoticeView(string Endpoint, DateTimeOffset GoesAwayAt, bool Draining, int Moving);

internal sealed record EchoPolicyView(
    string Codec,
    int Shadows,
    string Interval,
    long Retention,
    long MaxLagBytes,
    long? MaxOutputLag,
    string AckTimeout,
    int RedundancyFloor,
    bool ZoneDiversity,
    int MaxMessageBytes,
    int UncomparedResponses,
    bool Failover,
    string StateScope);

internal sealed record RoutePolicyView(string Route, EchoPolicyView? Policy);

internal sealed record PolicyUpdateView(string Route, EchoPolicyView? Policy, string AppliesTo);

internal sealed record EstimateView(
    string Route,
    EchoPolicyView? Policy,
    int Sessions,
    double InputBytesPerSecond,
    double OutputBytesPerSecond,
    double EchoBandwidthBytesPerSecond,
    string EchoBandwidthBasis,
    double RelayCpuCores,
    string RelayCpuBasis,
    long EchoLogMemoryBytes,
    double ShipsPerSecondPerSession,
    List<EstimateHostView> Hosts,
    int AvailableHosts,
    List<string> Warnings);

internal sealed record EstimateHostView(
    string Endpoint,
    string? Region,
    string? Zone,
    string? Agent,
    bool Available,
    string? Why,
    int Shadows,
    double? CpuPercent,
    double? RttMs);

internal sealed record EndpointScoreAnswer(string Endpoint, string Cluster, EndpointScoreView? Score);

internal sealed record ScalingAnswer(bool Enabled, List<ScalingView> Routes);

internal sealed record L7RouteView(
    string Name,
    string Protocol,
    string? Listen,
    string Cluster,
    long Requests,
    long Retries,
    long Failures,
    double RetryBudgetTokens,
    string? IdempotencyKeyHeader,
    L7AffinityView? Affinity,
    L7MirrorView? Mirror);

internal sealed record L7AffinityView(string Mode, string Name, int Sessions, long Moves);

internal sealed record L7MirrorView(double Percent, string Methods, string Header, ShadowStats[] Shadows);

internal sealed record L7SessionView(string Route, string Key, string Endpoint, DateTimeOffset StartedAt, long Requests, int Moves, double IdleSeconds);

internal sealed record MigrateRequest(string? Target);

internal sealed record NoticeRequest(DateTimeOffset? At, string? In);

/// <summary>
/// Source-generated JSON metadata for every admin answer and request body: no reflection and no
/// runtime code generation, as Native AOT needs. An answer whose type is missing here fails with a
/// clear <see cref="InvalidOperationException"/> in every build, not only the AOT one.
/// </summary>
[JsonSourceGenerationOptions(JsonSerializerDefaults.Web, Converters = [typeof(SnakeCaseEnumConverter<SpliceTrigger>), typeof(SnakeCaseEnumConverter<ShadowConsistency>)])]
[JsonSerializable(typeof(ErrorView))]
[JsonSerializable(typeof(ErrorsView))]
[JsonSerializable(typeof(List<RouteView>))]
[JsonSerializable(typeof(EndpointView))]
[JsonSerializable(typeof(List<EndpointView>))]
[JsonSerializable(typeof(DrainView))]
[JsonSerializable(typeof(SessionView))]
[JsonSerializable(typeof(List<SessionView>))]
[JsonSerializable(typeof(MigrateView))]
[JsonSerializable(typeof(NoticeView))]
[JsonSerializable(typeof(List<RoutePolicyView>))]
[JsonSerializable(typeof(RoutePolicyView))]
[JsonSerializable(typeof(PolicyUpdateView))]
[JsonSerializable(typeof(EstimateView))]
[JsonSerializable(typeof(EndpointScoreAnswer))]
[JsonSerializable(typeof(RecommendationsView))]
[JsonSerializable(typeof(ScalingAnswer))]
[JsonSerializable(typeof(L7RouteView))]
[JsonSerializable(typeof(List<L7RouteView>))]
[JsonSerializable(typeof(List<L7SessionView>))]
[JsonSerializable(typeof(MigrateRequest))]
[JsonSerializable(typeof(NoticeRequest))]
internal sealed partial class AdminJsonContext : JsonSerializerContext;

/// <summary>An enum written as its snake_case name ("primary_failure"), as in the metrics' labels.</summary>
internal sealed class SnakeCaseEnumConverter<TEnum>() : JsonStringEnumConverter<TEnum>(JsonNamingPolicy.SnakeCaseLower)
    where TEnum : struct, Enum;
