using System.Net;
using System.Runtime.CompilerServices;
using Relay.Clusters;
using Relay.Configuration;
using Relay.Diagnostics;

namespace Relay.Health;

/// <summary>
/// Probes every endpoint with a TCP connect on its cluster's interval. Consecutive results past a
/// threshold flip the endpoint's health; each flip is logged and counted. One probe per endpoint is
/// in flight at a time.
/// </summary>
public sealed class ActiveHealthProber : IAsyncDisposable
{
    private static readonly TimeSpan s_tick = TimeSpan.FromMilliseconds(100);
    private readonly RelayRuntime _runtime;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stop = new();
    private readonly ConditionalWeakTable<EndpointState, ProbeSlot> _slots = new();
    private Task? _loop;

    public ActiveHealthProber(RelayRuntime runtime, ILogger<ActiveHealthProber> logger)
    {
        _runtime = runtime;
        _logger = logger;
    }

    /// <summary>
    /// Called after every probe, on the probing task: the endpoint, whether it connected, how long
    /// the connect took (or failed after) and when it finished (a <see cref="RelayRuntime.TimeProvider"/>
    /// timestamp). Set before <see cref="Start"/>; the prediction service feeds its scores from it.
    /// </summary>
    public Action<ProbeOutcome>? ProbeCompleted { get; set; }

    public void Start() => _loop = Task.Run(() => RunAsync(_stop.Token));

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        if (_loop is not null)
        {
            try
            {
                await _loop.ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                // The loop ends by cancellation; nothing else to report.
            }
        }

        _stop.Dispose();
    }

    private async Task RunAsync(CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(s_tick, _runtime.TimeProvider);
        while (await timer.WaitForNextTickAsync(cancellationToken).ConfigureAwait(false))
        {
            var now = _runtime.TimeProvider.GetTimestamp();
            foreach (var cluster in _runtime.Snapshot.Clusters.Values)
            {
                var policy = cluster.Config.ActiveHealth;
                if (!policy.Enabled)
                {
                    continue;
                }

                foreach (var endpoint in cluster.Endpoints)
                {
                    var slot = _slots.GetOrCreateValue(endpoint);
                    if (slot.InFlight || (slot.LastStart != 0 && _runtime.TimeProvider.GetElapsedTime(slot.LastStart, now) < policy.Interval))
                    {
                        continue;
                    }

                    slot.InFlight = true;
                    slot.LastStart = now;
                    _ = ProbeAsync(cluster, endpoint, policy, slot, cancellationToken);
                }
            }
        }
    }

    private async Task ProbeAsync(ClusterState cluster, EndpointState endpoint, ActiveHealthConfig policy, ProbeSlot slot, CancellationToken cancellationToken)
    {
        string? error = null;
        var started = _runtime.TimeProvider.GetTimestamp();
        try
        {
            error = await ProbeOnceAsync(endpoint.Config.Address, policy.Timeout, cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            return;
        }
        finally
        {
            slot.InFlight = false;
        }

        var finished = _runtime.TimeProvider.GetTimestamp();
        ProbeCompleted?.Invoke(new ProbeOutcome(endpoint, error is null, _runtime.TimeProvider.GetElapsedTime(started, finished), finished));
        var changed = endpoint.ProbeResult(error is null, error, policy, _runtime.TimeProvider.GetUtcNow());
        if (changed is bool healthy)
        {
            var state = healthy ? "healthy" : "unhealthy";
            var reason = healthy
                ? $"{policy.HealthyThreshold} consecutive probes succeeded"
                : $"{policy.UnhealthyThreshold} consecutive probes failed, last: {error}";
            RelayLog.EndpointHealthChanged(_logger, endpoint.Id, cluster.Name, state, reason);
            _runtime.Metrics.HealthTransitions.WithLabels(cluster.Name, endpoint.Id, state).Inc();
        }
    }

    /// <summary>Connects and closes; returns null on success or why it failed.</summary>
    public static async Task<string?> ProbeOnceAsync(DnsEndPoint address, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var outcome = await TcpConnect.ConnectAsync(address, timeout, cancellationToken).ConfigureAwait(false);
        outcome.Socket?.Dispose();
        return outcome switch
        {
            { Socket: not null } => null,
            { TimedOut: true } => $"connect timed out after {DurationParser.Format(timeout)}",
            _ => $"connect failed: {outcome.Error}",
        };
    }

    private sealed class ProbeSlot
    {
        public volatile bool InFlight;
        public long LastStart;
    }
}

/// <summary>One active probe's result (see <see cref="ActiveHealthProber.ProbeCompleted"/>).</summary>
public readonly record struct ProbeOutcome(EndpointState Endpoint, bool Success, TimeSpan Duration, long Timestamp);
