namespace Relay.Predict.Stability;

/// <summary>
/// Seconds on a monotonic scale from a <see cref="TimeProvider"/>, for feeding the predictor
/// (which takes explicit timestamps so traces can be replayed). Inject
/// <c>FakeTimeProvider</c> in tests.
/// </summary>
public sealed class PredictClock
{
    private readonly TimeProvider _time;
    private readonly long _origin;

    public PredictClock(TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(time);
        _time = time;
        _origin = time.GetTimestamp();
    }

    /// <summary>Seconds since this clock was created.</summary>
    public double NowSeconds => _time.GetElapsedTime(_origin).TotalSeconds;

    /// <summary>Converts a timestamp from the same provider (e.g. taken when a heartbeat
    /// arrived) to this clock's seconds.</summary>
    public double ToSeconds(long timestamp) => _time.GetElapsedTime(_origin, timestamp).TotalSeconds;
}
