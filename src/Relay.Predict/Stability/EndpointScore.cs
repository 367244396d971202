namespace Relay.Predict.Stability;

/// <summary>Why an endpoint's score is what it is; one flag per component that contributes a
/// probability of at least 5%.</summary>
[Flags]
public enum StabilityReasons
{
    None = 0,
    Liveness = 1 << 0,
    Latency = 1 << 1,
    Errors = 1 << 2,
    Load = 1 << 3,
    Host = 1 << 4,
    Notice = 1 << 5,
    Outlier = 1 << 6,
    Pauses = 1 << 7,
}

/// <summary>Outcome of scoring one endpoint.</summary>
public enum ScoreStatus
{
    Ok = 0,

    /// <summary>Nothing heard yet: the score is the configured prior.</summary>
    NoHistory,

    /// <summary>The evaluation clock jumped; models were rebased and decisions held.</summary>
    ClockJump,

    /// <summary>The evaluation time was earlier than the previous one; nothing changed.</summary>
    ClockWentBackwards,

    /// <summary>The evaluation time was not a finite number; nothing changed.</summary>
    InvalidTime,
}

/// <summary>Outcome of offering one sample to the predictor.</summary>
public enum SampleResult
{
    Accepted = 0,
    RejectedNotFinite,
    RejectedNegative,
    RejectedOutOfOrder,
    RejectedUnknownEndpoint,
}

/// <summary>
/// An endpoint's stability: <see cref="Score"/> = 1 - P(interruption within the horizon), with
/// each component's probability (combined as independent: P = 1 - Π(1 - p_i)) and the forecasts
/// behind them.
/// </summary>
public struct EndpointScore
{
    public double Score { get; set; }
    public double Probability { get; set; }
    public ScoreStatus Status { get; set; }
    public StabilityReasons Reasons { get; set; }
    public StabilityReasons Dominant { get; set; }
    public double Phi { get; set; }
    public double PLiveness { get; set; }
    public double PLatency { get; set; }
    public double PErrors { get; set; }
    public double PLoad { get; set; }
    public double PHost { get; set; }
    public double PNotice { get; set; }
    public double POutlier { get; set; }
    public double PPauses { get; set; }
    public double LatencyForecastSeconds { get; set; }
    public double ErrorRateForecast { get; set; }
    public double LoadForecast { get; set; }
    public double PauseForecastSeconds { get; set; }
    public double NoticeSecondsLeft { get; set; }
    public double SecondsNeeded { get; set; }

    /// <summary>Page-Hinkley saw the endpoint's latency shift up against its own history.
    /// Informational (it adds no probability): it tells a step from a trend in the reasons.</summary>
    public bool LatencyShift { get; set; }

    /// <summary>A readable line for the admin API and logs (allocates; not for the hot path).</summary>
    public readonly override string ToString()
        => string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"score={Score:F3} p={Probability:F3} status={Status} reasons={Reasons} dominant={Dominant} phi={Phi:F1} latency@h={LatencyForecastSeconds * 1000:F0}ms errors@h={ErrorRateForecast:P0} load@h={LoadForecast:F0} pause@h={PauseForecastSeconds * 1000:F0}ms notice-left={NoticeSecondsLeft:F0}s needed={SecondsNeeded:F0}s latency-shift={LatencyShift}");
}

/// <summary>The guard's state for one endpoint.</summary>
public enum EndpointDecision
{
    /// <summary>Takes sessions.</summary>
    Serve = 0,

    /// <summary>Score is low but the dwell, cap or self-health gate holds the decision.</summary>
    Watch,

    /// <summary>Sessions should move away; no new sessions.</summary>
    Evacuate,
}
