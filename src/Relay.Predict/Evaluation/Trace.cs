namespace Relay.Predict.Evaluation;

/// <summary>What a trace event carries.</summary>
public enum TraceEventKind : byte
{
    /// <summary>An agent heartbeat arrived.</summary>
    Heartbeat,

    /// <summary>A client request completed: Value = latency (s), Failed = error/reset/timeout.</summary>
    Request,

    /// <summary>An active health check (HAProxy-style) completed: Value = latency, Failed.</summary>
    Probe,

    /// <summary>Load report: Value = load (sessions).</summary>
    Load,

    /// <summary>Host metrics: Value = CPU, Value2 = memory (fractions).</summary>
    Host,

    /// <summary>Interruption notice: Value = time the endpoint will vanish.</summary>
    Notice,
}

/// <summary>One observation in a trace, at the time the observer sees it.</summary>
public readonly record struct TraceEvent(double Time, int Endpoint, TraceEventKind Kind, double Value, double Value2, bool Failed);

/// <summary>The fault a synthetic trace injects into one endpoint.</summary>
public enum FaultKind
{
    NoFault,
    Crash,
    LatencyRamp,
    ErrorRamp,
    GcPauses,
    SinglePause,
    Overload,
    GrayFailure,
    Flapping,
    SpotNotice,
}

/// <summary>A replayable trace with its ground truth.</summary>
public sealed class Trace
{
    public required FaultKind Kind { get; init; }

    public required int Seed { get; init; }

    public required int Endpoints { get; init; }

    public required double DurationSeconds { get; init; }

    /// <summary>The endpoint the fault is injected into, -1 for none.</summary>
    public required int FaultyEndpoint { get; init; }

    /// <summary>When the fault (or its precursor) starts; NaN for none.</summary>
    public required double FaultStart { get; init; }

    /// <summary>When the endpoint becomes unusable (the interruption); NaN if it never does.</summary>
    public required double Onset { get; init; }

    public required TraceEvent[] Events { get; init; }

    /// <summary>Zone of each endpoint.</summary>
    public required int[] Zones { get; init; }

    /// <summary>True for faults with a precursor before the onset (the "gradual" targets).</summary>
    public bool IsGradual => Kind is FaultKind.LatencyRamp or FaultKind.ErrorRamp or FaultKind.GcPauses or FaultKind.Overload;

    /// <summary>True when a correct detector must act on the faulty endpoint.</summary>
    public bool ExpectsAction => FaultyEndpoint >= 0 && !double.IsNaN(Onset);
}
