using Relay.Configuration;

namespace Relay.Clusters;

public enum EndpointHealth
{
    Healthy,
    Unhealthy,
}

/// <summary>
/// The live state of one endpoint: its sessions and its health. Kept across reloads while the
/// endpoint id stays, so session counts and health history survive a config change.
/// </summary>
public sealed class EndpointState
{
    private int _activeSessions;
    private long _totalSessions;
    private long _connectFailures;
    private long _resets;
    private int _consecutivePassiveFailures;
    private int _consecutiveProbeSuccesses;
    private int _consecutiveProbeFailures;
    private long _ejectedUntilTicks;
    private volatile bool _activeHealthy = true;
    private volatile bool _removed;
    private volatile bool _draining;
    private volatile bool _predictedUnstable;

    public EndpointState(string clusterName, EndpointConfig config)
    {
        ClusterName = clusterName;
        Config = config;
    }

    public string Id => Config.Id;

    public string ClusterName { get; }

    public EndpointConfig Config { get; internal set; }

    public int ActiveSessions => Volatile.Read(ref _activeSessions);

    public long TotalSessions => Interlocked.Read(ref _totalSessions);

    public long ConnectFailures => Interlocked.Read(ref _connectFailures);

    public long Resets => Interlocked.Read(ref _resets);

    public bool ActiveHealthy => _activeHealthy;

    public bool Removed
    {
        get => _removed;
        internal set => _removed = value;
    }

    /// <summary>An operator drain: no new sessions (L4) or affinity sessions (L7) go here; live ones carry on.</summary>
    public bool Draining
    {
        get => _draining;
        set => _draining = value;
    }

    /// <summary>Relay.Predict decided to evacuate the endpoint (docs/prediction.md): no new sessions or shadows go here.</summary>
    public bool PredictedUnstable
    {
        get => _predictedUnstable;
        set => _predictedUnstable = value;
    }

    /// <summary>Relay.Predict's stability score in [0, 1] (1 = stable), or null while prediction is off; echo prefers shadows with higher ones.</summary>
    public double? PredictedScore { get; set; }

    public string? LastProbeError { get; private set; }

    public DateTimeOffset? LastProbeAt { get; private set; }

    public bool IsEjected(long nowTicks) => nowTicks < Interlocked.Read(ref _ejectedUntilTicks);

    /// <summary>Whether new sessions may go here: not removed, not drained, probes passing, not passively ejected, not evacuated by prediction.</summary>
    public bool IsAvailable(long nowTicks) => AvailableButForEjection && !IsEjected(nowTicks);

    /// <summary>Available but for a passive ejection: what <see cref="ClusterState.Pick(long, ReadOnlySpan{EndpointState?}, out bool)"/> falls back to when every endpoint is ejected.</summary>
    public bool IsOnlyEjected(long nowTicks) => AvailableButForEjection && IsEjected(nowTicks);

    private bool AvailableButForEjection => !_removed && !_draining && !_predictedUnstable && _activeHealthy;

    public EndpointHealth Health(long nowTicks) => _activeHealthy && !IsEjected(nowTicks) ? EndpointHealth.Healthy : EndpointHealth.Unhealthy;

    public void SessionStarted()
    {
        Interlocked.Increment(ref _activeSessions);
        Interlocked.Increment(ref _totalSessions);
    }

    public void SessionEnded() => Interlocked.Decrement(ref _activeSessions);

    /// <summary>Counts a reset that says nothing about the endpoint's health (see L4Handler.EndSession).</summary>
    public void RecordReset() => Interlocked.Increment(ref _resets);

    /// <summary>The endpoint served (an L4 session it answered, an L7 response): passive failures start again from zero.</summary>
    public void ConnectSucceeded() => Volatile.Write(ref _consecutivePassiveFailures, 0);

    /// <summary>Records a passive failure; returns true when it ejects the endpoint.</summary>
    public bool PassiveFailure(bool isConnectFailure, PassiveHealthConfig policy, long nowTicks)
    {
        if (isConnectFailure)
        {
            Interlocked.Increment(ref _connectFailures);
        }
        else
        {
            Interlocked.Increment(ref _resets);
        }

        if (!policy.Enabled)
        {
            return false;
        }

        if (Interlocked.Increment(ref _consecutivePassiveFailures) < policy.FailureThreshold || IsEjected(nowTicks))
        {
            return false;
        }

        Volatile.Write(ref _consecutivePassiveFailures, 0);
        Interlocked.Exchange(ref _ejectedUntilTicks, nowTicks + (long)(policy.EjectionTime.TotalSeconds * TimeProviderTicks.PerSecond));
        return true;
    }

    /// <summary>Applies one probe result; returns the new active health when it changed.</summary>
    public bool? ProbeResult(bool success, string? error, ActiveHealthConfig policy, DateTimeOffset now)
    {
        LastProbeAt = now;
        LastProbeError = error;
        if (success)
        {
            _consecutiveProbeFailures = 0;
            _consecutiveProbeSuccesses++;
            if (!_activeHealthy && _consecutiveProbeSuccesses >= policy.HealthyThreshold)
            {
                _activeHealthy = true;
                return true;
            }
        }
        else
        {
            _consecutiveProbeSuccesses = 0;
            _consecutiveProbeFailures++;
            if (_activeHealthy && _consecutiveProbeFailures >= policy.UnhealthyThreshold)
            {
                _activeHealthy = false;
                return false;
            }
        }

        return null;
    }
}

/// <summary>Monotonic ticks from <see cref="TimeProvider"/>, converted once.</summary>
public static class TimeProviderTicks
{
    public static readonly double PerSecond = TimeProvider.System.TimestampFrequency;
}
