namespace Relay.Echo;

/// <summary>Where one shadow stands for one session (DESIGN.md "Echo").</summary>
internal enum ShadowState : byte
{
    /// <summary>Behind the log by more than the policy's lag bound, or not acked yet.</summary>
    Syncing,

    /// <summary>Within the lag bound, and every compared digest matched: may take the session over.</summary>
    Ready,

    /// <summary>A digest differed: this shadow may never take this session over. Terminal.</summary>
    Diverged,

    /// <summary>No ack for the policy's timeout (recovers when acks resume), or evicted from the log (terminal).</summary>
    Lost,
}

/// <summary>The part of an echo policy a tracker enforces.</summary>
/// <param name="MaxLagBytes">Ready needs the shadow within this many input bytes of the log's end.</param>
/// <param name="MaxOutputLag">
/// Ready also needs the shadow's output within this many units of what the primary delivered (messages
/// with a message codec, bytes with raw): a takeover waits for the shadow's output to reach
/// <c>delivered</c> inside the blackout, so a shadow still replaying history is not Ready. 0 turns the check off.
/// </param>
/// <param name="AckTimeout">Lost after this long without an ack.</param>
internal sealed record ShadowPolicy(long MaxLagBytes, long MaxOutputLag, TimeSpan AckTimeout)
{
    public static ShadowPolicy Default { get; } = new(64 * 1024, 0, TimeSpan.FromSeconds(3));

    public void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfNegative(MaxLagBytes, nameof(MaxLagBytes));
        ArgumentOutOfRangeException.ThrowIfNegative(MaxOutputLag, nameof(MaxOutputLag));
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(AckTimeout, TimeSpan.Zero, nameof(AckTimeout));
    }
}

/// <summary>A change of a shadow's state, with the reason the API and the log show.</summary>
internal readonly record struct ShadowStateChange(ShadowState From, ShadowState To, string Reason, DateTimeOffset At);

/// <summary>Why a shadow is in its state; <see cref="ShadowSessionTracker.Reason"/> renders it with the numbers.</summary>
internal enum ShadowReason : byte
{
    AwaitingFirstAck,
    LagBytes,
    OutputLag,
    CaughtUp,
    CaughtUpDigestsPending,
    DigestDiverged,
    Evicted,
    AckTimeout,
    NeverAcked,
}

/// <summary>
/// The state of one (session, shadow) pair, from what the relay learns: how far the log has grown,
/// the shadow's acks (how far it has applied the log, and how its output's digests compared), and
/// time. Each input re-evaluates the state and returns true when it changed
/// (<see cref="LastChange"/> says how); the echo shipper also calls <see cref="Evaluate"/> on its
/// tick so that silence turns into Lost. Evaluating allocates nothing unless the state changes.
/// Single-threaded: the shipper owns it.
/// </summary>
internal sealed class ShadowSessionTracker
{
    private readonly ShadowPolicy _policy;
    private readonly TimeProvider _time;
    private long _lastAckTimestamp;
    private bool _acked;
    private string? _evictedReason;

    public ShadowSessionTracker(ShadowPolicy policy, TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(policy);
        ArgumentNullException.ThrowIfNull(time);
        policy.Validate();
        _policy = policy;
        _time = time;
        _lastAckTimestamp = time.GetTimestamp();
        LastChange = new ShadowStateChange(ShadowState.Syncing, ShadowState.Syncing, Reason, time.GetUtcNow());
    }

    public ShadowState State { get; private set; } = ShadowState.Syncing;

    public ShadowReason ReasonKind { get; private set; } = ShadowReason.AwaitingFirstAck;

    /// <summary>A sentence for the API and the log, with the current numbers.</summary>
    public string Reason => ReasonKind switch
    {
        ShadowReason.AwaitingFirstAck => "waiting for the shadow's first ack",
        ShadowReason.LagBytes => $"behind the log by {LagBytes} bytes (bound {_policy.MaxLagBytes})",
        ShadowReason.OutputLag => $"its output is {OutputLag} behind the primary's delivered {Delivered} (bound {_policy.MaxOutputLag})",
        ShadowReason.CaughtUp => "within the lag bound and every compared digest matched",
        ShadowReason.CaughtUpDigestsPending => "within the lag bound; its output is still catching up with the primary's digests",
        ShadowReason.DigestDiverged => DivergedIndex >= 0
            ? $"the digest of response {DivergedIndex} differs from the primary's"
            : "a response digest differs from the primary's",
        ShadowReason.Evicted => _evictedReason ?? "evicted from the echo log",
        ShadowReason.AckTimeout => $"no ack for {SinceLastAck.TotalMilliseconds:F0} ms (timeout {_policy.AckTimeout.TotalMilliseconds:F0} ms)",
        _ => $"no ack since the shadow was added {SinceLastAck.TotalMilliseconds:F0} ms ago (timeout {_policy.AckTimeout.TotalMilliseconds:F0} ms)",
    };

    public ShadowStateChange LastChange { get; private set; }

    public long LogBytes { get; private set; }

    /// <summary>What the primary delivered to the client: messages with a message codec, bytes with raw.</summary>
    public long Delivered { get; private set; }

    public long AckedBytes { get; private set; }

    public long AckedMessages { get; private set; }

    public long LagBytes => Math.Max(0, LogBytes - AckedBytes);

    /// <summary>How far the shadow's output (<see cref="AckedMessages"/>, in the unit of <see cref="Delivered"/>) trails the primary's.</summary>
    public long OutputLag => Math.Max(0, Delivered - AckedMessages);

    public DigestStatus Digests { get; private set; } = DigestStatus.Match;

    /// <summary>The first message whose digest differed, or -1.</summary>
    public long DivergedIndex { get; private set; } = -1;

    public TimeSpan SinceLastAck => _time.GetElapsedTime(_lastAckTimestamp);

    /// <summary>The log grew (the pump appended) and the primary delivered more: lags are measured against these.</summary>
    public bool OnLogAdvanced(long logBytes, long delivered)
    {
        LogBytes = Math.Max(LogBytes, logBytes);
        Delivered = Math.Max(Delivered, delivered);
        return Evaluate();
    }

    /// <summary>
    /// An ack from the shadow's agent: it has applied the log up to these positions, and its
    /// output's digests compare as <paramref name="digests"/>. Positions never move back; a stale
    /// ack still counts as a sign of life.
    /// </summary>
    public bool OnAck(long ackedBytes, long ackedMessages, DigestStatus digests, long divergedIndex = -1)
    {
        _acked = true;
        _lastAckTimestamp = _time.GetTimestamp();
        AckedBytes = Math.Max(AckedBytes, ackedBytes);
        AckedMessages = Math.Max(AckedMessages, ackedMessages);
        if (Digests != DigestStatus.Diverged)
        {
            Digests = digests;
            DivergedIndex = digests == DigestStatus.Diverged ? divergedIndex : -1;
        }

        return Evaluate();
    }

    /// <summary>The echo log trimmed past this shadow's ack (<see cref="EchoLog.IsEvicted"/>).</summary>
    public bool OnEvicted(string reason)
    {
        _evictedReason ??= reason;
        return Evaluate();
    }

    /// <summary>Re-derives the state from the inputs and the clock; true when it changed.</summary>
    public bool Evaluate()
    {
        var (state, kind) = Decide();
        ReasonKind = kind;
        if (state == State)
        {
            return false;
        }

        LastChange = new ShadowStateChange(State, state, Reason, _time.GetUtcNow());
        State = state;
        return true;
    }

    private (ShadowState, ShadowReason) Decide()
    {
        if (State == ShadowState.Diverged)
        {
            return (State, ReasonKind);
        }

        if (Digests == DigestStatus.Diverged)
        {
            return (ShadowState.Diverged, ShadowReason.DigestDiverged);
        }

        if (_evictedReason is not null)
        {
            return (ShadowState.Lost, ShadowReason.Evicted);
        }

        if (SinceLastAck > _policy.AckTimeout)
        {
            return (ShadowState.Lost, _acked ? ShadowReason.AckTimeout : ShadowReason.NeverAcked);
        }

        if (!_acked)
        {
            return (ShadowState.Syncing, ShadowReason.AwaitingFirstAck);
        }

        if (LagBytes > _policy.MaxLagBytes)
        {
            return (ShadowState.Syncing, ShadowReason.LagBytes);
        }

        if (_policy.MaxOutputLag > 0 && OutputLag > _policy.MaxOutputLag)
        {
            return (ShadowState.Syncing, ShadowReason.OutputLag);
        }

        return (ShadowState.Ready, Digests == DigestStatus.Pending ? ShadowReason.CaughtUpDigestsPending : ShadowReason.CaughtUp);
    }
}
