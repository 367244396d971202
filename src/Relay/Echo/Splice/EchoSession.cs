using Relay.Clusters;
using Relay.Configuration;

namespace Relay.Echo.Splice;

/// <summary>Why a session was spliced.</summary>
public enum SpliceTrigger
{
    /// <summary>The primary's connection failed (reset, unexpected close, refused input).</summary>
    PrimaryFailure,

    /// <summary>An operator drained the endpoint.</summary>
    Drain,

    /// <summary>An operator migrated the session.</summary>
    Migrate,

    /// <summary>The endpoint posted an interruption notice.</summary>
    Notice,

    /// <summary>The endpoint's health (score) fell below its threshold.</summary>
    Health,
}

/// <summary>One splice, as the session's API record shows it.</summary>
public sealed record SpliceRecord(DateTimeOffset At, string From, string? To, SpliceTrigger Trigger, string Result, double BlackoutMs, string? Detail);

/// <summary>
/// The echo side of one session: its input log, the primary's response stream with digests, and its
/// shadows. The pumps write the log and the response stream; the agent links read them.
/// </summary>
internal sealed class EchoSession : IDisposable
{
    private readonly object _gate = new();
    private readonly List<ShadowLink> _shadows = [];
    private readonly List<SpliceRecord> _splices = [];
    private readonly HashSet<string> _usedEndpoints = new(StringComparer.Ordinal);
    private string? _lastNoShadowReason;
    private long _delivered;

    public EchoSession(long id, string route, EchoPolicyConfig policy, int maxMessageBytes, string primary)
    {
        Id = id;
        _usedEndpoints.Add(primary);
        Route = route;
        Policy = policy;
        Codec = policy.Codec switch
        {
            EchoCodec.Lines => MessageCodec.Lines,
            EchoCodec.LengthPrefixed16 => MessageCodec.LengthPrefixed16,
            EchoCodec.LengthPrefixed32 => MessageCodec.LengthPrefixed32,
            EchoCodec.Resp => MessageCodec.Resp,
            _ => MessageCodec.Raw,
        };
        MaxMessageBytes = maxMessageBytes;
        var options = new CodecOptions(Codec, maxMessageBytes);
        var requests = Codec == MessageCodec.Raw ? null : new MessageStream(MessageFramer.Create(options, StreamDirection.Request));
        Log = new EchoLog(new EchoLogOptions(policy.RetentionBytes, EchoLogOptions.DefaultSegmentBytes, EchoLogOptions.DefaultMaxShadows), requests);
        // Digests wait here only until the next ship (every interval): 1,024 entries (24 KiB) is ample,
        // and one the ring dropped before shipping is skipped, never counted as a match.
        Digests = new DigestLog(1024);
        Output = new MessageStream(MessageFramer.Create(options, StreamDirection.Response), Digests);
        TrackerPolicy = new ShadowPolicy(policy.MaxLagBytes, policy.MaxOutputLag ?? (Codec == MessageCodec.Raw ? policy.MaxLagBytes : RelayDefaults.EchoMaxOutputLagMessages), policy.AckTimeout);
    }

    public long Id { get; }

    /// <summary>Serialises shadow selection for this session.</summary>
    public object ShadowGate { get; } = new();

    public string Route { get; }

    public EchoPolicyConfig Policy { get; }

    public MessageCodec Codec { get; }

    public int MaxMessageBytes { get; }

    public bool DeliveredIsMessages => Codec != MessageCodec.Raw;

    /// <summary>Client input, from session start (the source of truth for <c>in</c>).</summary>
    public EchoLog Log { get; }

    /// <summary>The primary's output digests, per message or per 4 KiB raw window.</summary>
    public DigestLog Digests { get; }

    /// <summary>The response stream as the client received it; only the outbound pump touches it.</summary>
    public MessageStream Output { get; }

    public ShadowPolicy TrackerPolicy { get; }

    /// <summary><c>delivered</c>: messages (codecs) or bytes (raw) written to the client; published by the outbound pump.</summary>
    public long Delivered => Volatile.Read(ref _delivered);

    public void PublishDelivered() => Volatile.Write(ref _delivered, DeliveredIsMessages ? Output.Messages : Output.BytesFed);

    /// <summary>Set when the session has ended; links stop shipping and close its shadows.</summary>
    public bool Ended { get; private set; }

    public ShadowLink[] Shadows
    {
        get
        {
            lock (_gate)
            {
                return [.. _shadows];
            }
        }
    }

    /// <summary>How many shadows the session has, without copying the list (the health loop asks every 250 ms).</summary>
    public int ShadowCount
    {
        get
        {
            lock (_gate)
            {
                return _shadows.Count;
            }
        }
    }

    public SpliceRecord[] Splices
    {
        get
        {
            lock (_gate)
            {
                return [.. _splices];
            }
        }
    }

    public void AddSplice(SpliceRecord record)
    {
        lock (_gate)
        {
            _splices.Add(record);
            if (_splices.Count > 32)
            {
                _splices.RemoveAt(0);
            }
        }
    }

    /// <summary>Adds a shadow on <paramref name="link"/>'s endpoint; null with a reason when the log cannot replay from 0.</summary>
    public ShadowLink? TryAddShadow(AgentLink link, EndpointState endpoint, TimeProvider time, out string? reason)
    {
        lock (_gate)
        {
            if (Ended)
            {
                reason = "the session has ended";
                return null;
            }

            if (!_usedEndpoints.Add(endpoint.Id) && Policy.StateScope == EchoStateScope.Backend)
            {
                reason = $"endpoint {endpoint.Id} has already served this session; a replay there could apply its input twice";
                return null;
            }

            if (!Log.TryAddShadow(out var slot, out reason))
            {
                return null;
            }

            var shadow = new ShadowLink(this, link, endpoint, slot, new ShadowSessionTracker(TrackerPolicy, time));
            _shadows.Add(shadow);
            return shadow;
        }
    }

    /// <summary>
    /// Whether an endpoint may not get a new shadow of this session: with backend-scoped state, one
    /// that has been its primary or shadow (a replay from offset 0 there would apply the input twice).
    /// </summary>
    public bool HasUsed(string endpoint)
    {
        lock (_gate)
        {
            return Policy.StateScope == EchoStateScope.Backend && _usedEndpoints.Contains(endpoint);
        }
    }

    /// <summary>Returns true when <paramref name="reason"/> differs from the last reason given, so it is logged once.</summary>
    public bool NoShadowReasonChanged(string reason)
    {
        lock (_gate)
        {
            if (reason == _lastNoShadowReason)
            {
                return false;
            }

            _lastNoShadowReason = reason;
            return true;
        }
    }

    /// <summary>Removes a shadow (taken over, failed, or its agent went away); the link sends Close.</summary>
    public void RemoveShadow(ShadowLink shadow, string reason)
    {
        lock (_gate)
        {
            if (!_shadows.Remove(shadow))
            {
                return;
            }

            shadow.Detach(reason);
            Log.RemoveShadow(shadow.Slot);
        }
    }

    public void End()
    {
        ShadowLink[] shadows;
        lock (_gate)
        {
            Ended = true;
            shadows = [.. _shadows];
            _shadows.Clear();
        }

        foreach (var shadow in shadows)
        {
            shadow.Detach("the session ended");
        }
    }

    /// <summary>Call after the pumps have stopped and every link has let go of the session.</summary>
    public void Dispose() => Log.Dispose();
}

/// <summary>One (session, shadow) pair: what was shipped, what was acked, and the shadow's state.</summary>
internal sealed class ShadowLink
{
    private readonly object _gate = new();

    public ShadowLink(EchoSession session, AgentLink agent, EndpointState endpoint, int slot, ShadowSessionTracker tracker)
    {
        Session = session;
        Agent = agent;
        Endpoint = endpoint;
        Slot = slot;
        Tracker = tracker;
    }

    public EchoSession Session { get; }

    public AgentLink Agent { get; }

    public EndpointState Endpoint { get; }

    public int Slot { get; }

    public ShadowSessionTracker Tracker { get; }

    // Shipper-only state (the agent link's send loop).
    public bool Opened { get; set; }

    public long SentOffset { get; set; }

    public long SentDigestIndex { get; set; }

    public long SentDelivered { get; set; } = -1;

    public long LastShipTimestamp { get; set; }

    /// <summary>Set once: the shadow left the session; the link sends Close and forgets it.</summary>
    public string? DetachedReason { get; private set; }

    public bool BackendClosed { get; private set; }

    public long AgentApplied { get; private set; }

    public ShadowState State
    {
        get
        {
            lock (_gate)
            {
                return Tracker.State;
            }
        }
    }

    public (ShadowState State, string Reason, long LagBytes, long AckedBytes, long AckedMessages, DigestStatus Digests, TimeSpan SinceAck) Snapshot()
    {
        lock (_gate)
        {
            return (Tracker.State, Tracker.Reason, Tracker.LagBytes, Tracker.AckedBytes, Tracker.AckedMessages, Tracker.Digests, Tracker.SinceLastAck);
        }
    }

    internal void Detach(string reason)
    {
        lock (_gate)
        {
            DetachedReason ??= reason;
        }
    }

    /// <summary>Applies an ack; returns the state change, if any.</summary>
    public ShadowStateChange? OnAck(in AckFrame ack)
    {
        lock (_gate)
        {
            AgentApplied = Math.Max(AgentApplied, ack.Applied);
            BackendClosed |= ack.BackendClosed;
            var log = Session.Log;
            var changed = false;
            if (DetachedReason is null)
            {
                log.Ack(Slot, Math.Min(ack.Applied, log.Length));
                changed = Tracker.OnAck(Math.Min(ack.Applied, log.Length), ack.ShadowMessages, ack.Status, ack.DivergedIndex);
                if (log.IsEvicted(Slot))
                {
                    changed |= Tracker.OnEvicted("the echo log trimmed past this shadow's ack");
                }
            }

            return changed ? Tracker.LastChange : null;
        }
    }

    /// <summary>
    /// The shipper's tick: the log advanced, time passed. <paramref name="agentAlive"/> says the
    /// agent's heartbeats are current: a shadow that has acked the whole log then gets nothing to
    /// ack, and its silence is not a loss (an idle session keeps a Ready shadow).
    /// </summary>
    public ShadowStateChange? OnTick(bool agentAlive)
    {
        lock (_gate)
        {
            var log = Session.Log;
            var changed = Tracker.OnLogAdvanced(log.Length, Session.Delivered);
            if (agentAlive && DetachedReason is null && Tracker.AckedBytes >= log.Length && Tracker.State != ShadowState.Diverged)
            {
                changed |= Tracker.OnAck(Tracker.AckedBytes, Tracker.AckedMessages, Tracker.Digests, Tracker.DivergedIndex);
            }

            if (log.IsEvicted(Slot))
            {
                changed |= Tracker.OnEvicted("the echo log trimmed past this shadow's ack");
            }

            changed |= Tracker.Evaluate();
            return changed ? Tracker.LastChange : null;
        }
    }

    public ShadowStateChange? MarkLost(string reason)
    {
        lock (_gate)
        {
            return Tracker.OnEvicted(reason) ? Tracker.LastChange : null;
        }
    }
}
