using System.Collections.Immutable;
using Relay.Clusters;
using Relay.Echo;
using Relay.Echo.Splice;

namespace Relay.Prediction;

/// <summary>An echoed session as the prediction service sees it: where it runs and where it could go now.</summary>
internal readonly record struct EchoedSession(long Id, string Route, string Endpoint, ImmutableArray<string> ReadyShadows);

/// <summary>The last heartbeat of an endpoint's agent.</summary>
/// <summary>An agent's last heartbeat: host CPU percent, host memory share in use (0 when the agent could not read it), and when.</summary>
internal readonly record struct AgentReport(double CpuPercent, DateTimeOffset At, double MemoryShare = 0);

/// <summary>What the prediction service reads from echo and how it moves sessions (a seam for tests).</summary>
internal interface IEchoSignals
{
    /// <summary>echo.maxConcurrentMigrations now.</summary>
    public int MaxConcurrentMigrations { get; }

    /// <summary>Turns EchoManager's own health-based evacuation on or off.</summary>
    public bool HealthEvacuation { set; }

    public void CollectSessions(List<EchoedSession> into);

    public void CollectHeartbeats(Dictionary<string, AgentReport> into);

    public DateTimeOffset? NoticeFor(string endpoint);

    public Task<SpliceOutcome?> MigrateAsync(long sessionId, string? target, SpliceTrigger trigger);
}

/// <summary><see cref="IEchoSignals"/> over the relay's <see cref="EchoManager"/>.</summary>
internal sealed class EchoSignals(EchoManager echo, RelayRuntime runtime) : IEchoSignals
{
    public int MaxConcurrentMigrations => runtime.Snapshot.Config.Echo.MaxConcurrentMigrations;

    public bool HealthEvacuation
    {
        set => echo.HealthEvacuation = value;
    }

    public void CollectSessions(List<EchoedSession> into)
    {
        foreach (var spliced in echo.Sessions)
        {
            if (spliced.IsEnding)
            {
                continue;
            }

            var ready = spliced.Echo.Shadows
                .Where(s => s.DetachedReason is null && s.State == ShadowState.Ready && s.Agent.Connected)
                .Select(s => s.Endpoint.Id)
                .ToImmutableArray();
            into.Add(new EchoedSession(spliced.Session.Id, spliced.Echo.Route, spliced.Endpoint.Id, ready));
        }
    }

    public void CollectHeartbeats(Dictionary<string, AgentReport> into)
    {
        foreach (var link in echo.Links)
        {
            if (link.Connected && link.LastHeartbeat is { } beat && link.LastHeartbeatAt is { } at)
            {
                into[link.Endpoint.Id] = new AgentReport(beat.CpuPercent, at, beat.MemoryTotalBytes > 0 ? (double)beat.MemoryBytes / beat.MemoryTotalBytes : 0);
            }
        }
    }

    public DateTimeOffset? NoticeFor(string endpoint) => echo.NoticeFor(endpoint);

    public Task<SpliceOutcome?> MigrateAsync(long sessionId, string? target, SpliceTrigger trigger) => echo.MigrateAsync(sessionId, target, trigger);
}
