using System.Buffers;
using System.IO.Pipelines;
using Microsoft.AspNetCore.Connections;
using Relay.Clusters;
using Relay.L4;

namespace Relay.Echo.Splice;

/// <summary>What a splice ended in.</summary>
public sealed record SpliceOutcome(bool Spliced, string From, string? To, double BlackoutMs, string? Failure)
{
    public static SpliceOutcome NotRun(string from, string why) => new(false, from, null, 0, why);
}

/// <summary>
/// The two pumps of an echoed session (DESIGN.md "A session's two streams"), and the splice that
/// pauses them, moves the upstream leg to a shadow's agent and resumes them. The client→server pump
/// appends every byte to the echo log before the primary sees it; the server→client pump forwards
/// whole messages only, so <c>delivered</c> is always a splice point.
/// </summary>
internal sealed class SplicedSession
{
    private readonly EchoManager _manager;
    private readonly ConnectionContext _client;
    private readonly object _stateLock = new();
    private ConnectionContext _upstream;
    private int _generation;
    private volatile bool _pauseRequested;
    private TaskCompletionSource<bool> _resume = NewResume();
    private TaskCompletionSource _inParked = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private TaskCompletionSource _outParked = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Task<SpliceOutcome>? _splicing;
    private Task<SpliceOutcome>? _lastSplice;
    private bool _inboundDone;
    private bool _outboundDone;
    private volatile bool _clientEnded;
    private volatile bool _primaryFailed;
    private RelayError _failure;
    private string? _failureDetail;
    private long _deliveredBytes;

    public SplicedSession(EchoManager manager, L4Session session, EchoSession echo, ConnectionContext upstream, EndpointState endpoint)
    {
        _manager = manager;
        Session = session;
        Echo = echo;
        _client = session.Client;
        _upstream = upstream;
        Endpoint = endpoint;
    }

    public L4Session Session { get; }

    public EchoSession Echo { get; }

    /// <summary>The endpoint serving the session now (changes at each splice).</summary>
    public EndpointState Endpoint { get; private set; }

    public ConnectionContext Upstream => Volatile.Read(ref _upstream);

    public bool IsSplicing => Volatile.Read(ref _splicing) is not null;

    public bool IsEnding
    {
        get
        {
            lock (_stateLock)
            {
                return _outboundDone;
            }
        }
    }

    private static TaskCompletionSource<bool> NewResume() => new(TaskCreationOptions.RunContinuationsAsynchronously);

    public async Task RunAsync()
    {
        var inbound = InboundAsync();
        var outbound = OutboundAsync();
        await Task.WhenAll(inbound, outbound).ConfigureAwait(false);
        // The last splice may still be closing the old leg and recording itself after the resume.
        var splicing = Volatile.Read(ref _lastSplice);
        if (splicing is not null)
        {
            await splicing.ConfigureAwait(false);
        }

        await Upstream.DisposeAsync().ConfigureAwait(false);
    }

    /// <summary>A planned splice (drain, migrate, notice, health): pause, TAKEOVER, switch or roll back.</summary>
    public async Task<SpliceOutcome> SpliceAsync(SpliceTrigger trigger, EndpointState? target)
    {
        // Before the pause, give a Ready shadow a moment to apply the whole log and answer it: the
        // agent then has nothing to wait for while the session is frozen, which keeps the blackout
        // to the TAKEOVER round trip. Bounded, and skipped when nothing is Ready.
        var deadline = _manager.Time.GetTimestamp();
        var bound = TimeSpan.FromMilliseconds(Math.Max(20, 2 * Echo.Policy.Interval.TotalMilliseconds));
        while (!IsCaughtUp(target) && _manager.Time.GetElapsedTime(deadline) < bound)
        {
            await Task.Delay(1).ConfigureAwait(false);
        }

        // Then wake the agent that will take over and let it check the shadow, still before the pause.
        var prepared = await _manager.PrepareTakeoverAsync(this, target).ConfigureAwait(false);
        var outcome = StartPlannedSplice(trigger, target, prepared, out var started);
        if (!started && prepared is not null)
        {
            await prepared.Connection.DisposeAsync().ConfigureAwait(false);
            prepared.Shadow.Agent.RefillSpareLater();
        }

        return await outcome.ConfigureAwait(false);
    }

    private bool IsCaughtUp(EndpointState? target)
    {
        var length = Echo.Log.Length;
        var delivered = Echo.Delivered;
        var anyReady = false;
        foreach (var shadow in Echo.Shadows)
        {
            if (shadow.DetachedReason is not null || (target is not null && !ReferenceEquals(shadow.Endpoint, target)))
            {
                continue;
            }

            var snap = shadow.Snapshot();
            if (snap.State != ShadowState.Ready)
            {
                continue;
            }

            anyReady = true;
            if (snap.AckedBytes >= length && snap.AckedMessages >= delivered)
            {
                return true;
            }
        }

        // Nothing Ready to wait for: go now (the takeover will say why it cannot run).
        return !anyReady;
    }

    /// <summary>Starts a planned splice; <paramref name="started"/> is false when <paramref name="prepared"/> was not taken (another splice runs, or the session ends).</summary>
    private Task<SpliceOutcome> StartPlannedSplice(SpliceTrigger trigger, EndpointState? target, PreparedTakeover? prepared, out bool started)
    {
        int generation;
        lock (_stateLock)
        {
            generation = _generation;
        }

        return BeginSplice(trigger, target, prepared, primaryFailed: false, generation, out var task, out started) ? task : Task.FromResult(SpliceOutcome.NotRun(Endpoint.Id, "the session is ending"));
    }

    /// <summary>Starts a splice unless one runs already or the upstream it is about has been replaced.</summary>
    /// <remarks>
    /// The blackout is timed from here, where the pumps are asked to pause, or for a failover from
    /// <paramref name="failureSeenAt"/>, when a pump saw the primary close. A planned splice then runs
    /// on the caller's thread up to its first wait: that thread has just read the agent's
    /// TakeoverPrepared and is awake, where a hop to the thread pool would wake another one inside the
    /// blackout. A failover starts on the thread pool, since its caller is a pump that must park first.
    /// </remarks>
    private bool BeginSplice(SpliceTrigger trigger, EndpointState? target, PreparedTakeover? prepared, bool primaryFailed, int generation, out Task<SpliceOutcome> task, out bool started, long? failureSeenAt = null)
    {
        started = false;
        Task<Task<SpliceOutcome>> core;
        lock (_stateLock)
        {
            if (primaryFailed && generation == _generation)
            {
                _primaryFailed = true;
            }

            if (_splicing is not null)
            {
                task = _splicing;
                return true;
            }

            if (generation != _generation || _outboundDone || (_inboundDone && !_clientEnded))
            {
                task = Task.FromResult(SpliceOutcome.NotRun(Endpoint.Id, "the upstream changed or the session is ending"));
                return false;
            }

            _resume = NewResume();
            _inParked = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _outParked = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            if (_inboundDone)
            {
                _inParked.TrySetResult();
            }

            _pauseRequested = true;
            var pausedAt = failureSeenAt ?? _manager.Time.GetTimestamp();
            core = new Task<Task<SpliceOutcome>>(() => SpliceCoreAsync(trigger, target, prepared, pausedAt));
            _splicing = core.Unwrap();
            started = true;
            Volatile.Write(ref _lastSplice, _splicing);
            task = _splicing;
        }

        if (primaryFailed)
        {
            core.Start(TaskScheduler.Default);
        }
        else
        {
            core.RunSynchronously(TaskScheduler.Default);
        }

        return true;
    }

    private async Task<SpliceOutcome> SpliceCoreAsync(SpliceTrigger trigger, EndpointState? target, PreparedTakeover? prepared, long started)
    {
        var time = _manager.Time;
        var old = Upstream;
        var from = Endpoint;

        // 1. Pause both pumps: inOffset and delivered are frozen once both have parked.
        _client.Transport.Input.CancelPendingRead();
        old.Transport.Input.CancelPendingRead();
        old.Transport.Output.CancelPendingFlush();
        Task inParked, outParked;
        lock (_stateLock)
        {
            inParked = _inParked.Task;
            outParked = _outParked.Task;
        }

        await Task.WhenAll(inParked, outParked).ConfigureAwait(false);

        // 2-3. TAKEOVER on the best Ready shadow, then the next.
        var result = await _manager.TakeoverAsync(this, target, trigger, prepared).ConfigureAwait(false);
        var (upstream, shadow) = (result.Upstream, result.Shadow);
        var resume = (upstream is not null && shadow is not null) || !_primaryFailed;
        if (upstream is not null && shadow is not null)
        {
            // 4. Switch: resume against the agent's connection. The old leg is closed after the resume.
            Echo.Output.RewindToSplicePoint();
            lock (_stateLock)
            {
                Volatile.Write(ref _upstream, upstream);
                Endpoint = shadow.Endpoint;
                _generation++;
                _primaryFailed = false;
            }

            Session.Upstream = upstream;
            Session.Endpoint = shadow.Endpoint;
            if (_clientEnded)
            {
                await upstream.Transport.Output.CompleteAsync().ConfigureAwait(false);
            }
        }

        // The blackout ends here, when the pumps are released; what follows runs while they move bytes.
        var blackout = time.GetElapsedTime(started).TotalMilliseconds;
        SpliceOutcome? lost = null;
        if (!resume)
        {
            // The session is lost: count it and set its end reason before the pumps wake and end.
            lost = new SpliceOutcome(false, from.Id, null, blackout, result.Failure);
            var failure = _failure == RelayError.None ? RelayError.UpstreamReset : _failure;
            _manager.OnLost(this, from, failure, trigger, blackout, result.Failure ?? "no shadow");
            Session.TrySetEndReason(RelayError.NoShadowReady, $"{_failureDetail}; {result.Failure}");
        }

        TaskCompletionSource<bool> release;
        lock (_stateLock)
        {
            _pauseRequested = false;
            _splicing = null;
            release = _resume;
        }

        release.TrySetResult(resume);
        EchoManager.RefillSpares(result);
        SpliceOutcome outcome;
        if (upstream is not null && shadow is not null)
        {
            from.SessionEnded();
            shadow.Endpoint.SessionStarted();
            await old.Transport.Input.CompleteAsync().ConfigureAwait(false);
            await old.Transport.Output.CompleteAsync().ConfigureAwait(false);
            _ = old.DisposeAsync().AsTask();
            outcome = new SpliceOutcome(true, from.Id, shadow.Endpoint.Id, blackout, null);
            _manager.OnSpliced(this, from, shadow, trigger, blackout, result.TailBytes);
        }
        else if (lost is not null)
        {
            _client.Abort(new ConnectionAbortedException(result.Failure ?? "the primary failed and no shadow could take over"));
            outcome = lost;
        }
        else
        {
            outcome = new SpliceOutcome(false, from.Id, null, blackout, result.Failure);
            _manager.OnRolledBack(this, from, trigger, blackout, result.Failure ?? "no shadow");
        }

        return outcome;
    }

    private Task<bool> ParkAsync(bool inbound)
    {
        Task<bool> resume;
        lock (_stateLock)
        {
            resume = _resume.Task;
            (inbound ? _inParked : _outParked).TrySetResult();
        }

        return resume;
    }

    /// <summary>
    /// The primary failed under a pump: start a failover and park, or end when the route does not fail
    /// over. A pump that checked something before calling this (the natural-end probe after a FIN)
    /// passes when it saw the failure as <c>seenAt</c>: the failover's blackout starts there.
    /// </summary>
    private async ValueTask<bool> FailAsync(int generation, RelayError failure, bool inbound, string? detail, long? seenAt = null)
    {
        if (!Echo.Policy.Failover)
        {
            return false;
        }

        lock (_stateLock)
        {
            if (generation == _generation)
            {
                _failure = failure;
                _failureDetail = detail;
            }
        }

        if (!BeginSplice(SpliceTrigger.PrimaryFailure, null, prepared: null, primaryFailed: true, generation, out _, out _, seenAt))
        {
            // Stale: that upstream was already replaced; carry on with the new one.
            lock (_stateLock)
            {
                return generation != _generation;
            }
        }

        return await ParkAsync(inbound).ConfigureAwait(false);
    }

    private int Generation()
    {
        lock (_stateLock)
        {
            return _generation;
        }
    }

    private async Task InboundAsync()
    {
        var input = _client.Transport.Input;
        var reason = RelayError.None;
        string? detail = null;
        var time = _manager.Time;
        try
        {
            while (true)
            {
                ReadResult result;
                try
                {
                    result = await input.ReadAsync().ConfigureAwait(false);
                }
                catch (Exception ex)
                {
                    (reason, detail) = (RelayError.ClientReset, ex.Message);
                    break;
                }

                if (result.IsCanceled)
                {
                    input.AdvanceTo(result.Buffer.Start);
                    if (_pauseRequested && !await ParkAsync(inbound: true).ConfigureAwait(false))
                    {
                        break;
                    }

                    continue;
                }

                var buffer = result.Buffer;
                var length = buffer.Length;
                var generation = Generation();
                var upstream = Upstream;
                if (length > 0)
                {
                    // The log first: a primary that dies after this loses nothing.
                    if (!Echo.Log.Append(buffer))
                    {
                        input.AdvanceTo(buffer.End);
                        (reason, detail) = (RelayError.ClientProtocol, FramingErrorText.Describe(Echo.Log.Framing!.Error));
                        break;
                    }

                    var output = upstream.Transport.Output;
                    foreach (var segment in buffer)
                    {
                        output.Write(segment.Span);
                    }

                    Session.AddIn(length, time.GetTimestamp());
                }

                input.AdvanceTo(buffer.End);
                if (length > 0)
                {
                    bool failed;
                    string? why = null;
                    try
                    {
                        var flush = await upstream.Transport.Output.FlushAsync().ConfigureAwait(false);
                        failed = flush.IsCompleted;
                    }
                    catch (Exception ex)
                    {
                        failed = true;
                        why = ex.Message;
                    }

                    if (failed)
                    {
                        // The primary stopped taking input; its bytes are in the log for the shadow.
                        if (!await FailAsync(generation, RelayError.UpstreamReset, inbound: true, why ?? "the primary stopped reading").ConfigureAwait(false))
                        {
                            reason = RelayError.UpstreamReset;
                            break;
                        }

                        continue;
                    }
                }

                if (result.IsCompleted)
                {
                    _clientEnded = true;
                    reason = RelayError.ClientClosed;
                    break;
                }
            }
        }
        finally
        {
            Session.TrySetEndReason(reason, detail);
            lock (_stateLock)
            {
                _inboundDone = true;
                _inParked.TrySetResult();
            }

            await input.CompleteAsync().ConfigureAwait(false);
            await Upstream.Transport.Output.CompleteAsync().ConfigureAwait(false);
        }
    }

    private async Task OutboundAsync()
    {
        var output = _client.Transport.Output;
        var reason = RelayError.None;
        string? detail = null;
        var time = _manager.Time;
        try
        {
            while (true)
            {
                var generation = Generation();
                var upstream = Upstream;
                var input = upstream.Transport.Input;
                ReadResult result;
                try
                {
                    result = await input.ReadAsync().ConfigureAwait(false);
                }
                catch (Exception ex)
                {
                    if (await FailAsync(generation, RelayError.UpstreamReset, inbound: false, ex.Message).ConfigureAwait(false))
                    {
                        continue;
                    }

                    (reason, detail) = (RelayError.UpstreamReset, ex.Message);
                    break;
                }

                if (result.IsCanceled)
                {
                    input.AdvanceTo(result.Buffer.Start);
                    if (_pauseRequested && !await ParkAsync(inbound: false).ConfigureAwait(false))
                    {
                        break;
                    }

                    continue;
                }

                var buffer = result.Buffer;
                if (!Echo.Output.FeedBuffered(buffer, _deliveredBytes, out var whole))
                {
                    input.AdvanceTo(buffer.Start, buffer.End);
                    var why = FramingErrorText.Describe(Echo.Output.Error);
                    if (await FailAsync(generation, RelayError.UpstreamProtocol, inbound: false, why).ConfigureAwait(false))
                    {
                        continue;
                    }

                    (reason, detail) = (RelayError.UpstreamProtocol, why);
                    break;
                }

                var length = whole.Length;
                if (length > 0)
                {
                    foreach (var segment in whole)
                    {
                        output.Write(segment.Span);
                    }

                    _deliveredBytes += length;
                    Session.AddOut(length, time.GetTimestamp());
                    Echo.PublishDelivered();
                }

                input.AdvanceTo(whole.End, buffer.End);
                if (length > 0)
                {
                    try
                    {
                        var flush = await output.FlushAsync().ConfigureAwait(false);
                        if (flush.IsCompleted)
                        {
                            reason = RelayError.ClientClosed;
                            break;
                        }
                    }
                    catch (Exception ex)
                    {
                        (reason, detail) = (RelayError.ClientReset, ex.Message);
                        break;
                    }
                }

                if (result.IsCompleted)
                {
                    var closedAt = time.GetTimestamp();
                    if (!await IsNaturalEndAsync().ConfigureAwait(false) && await FailAsync(generation, RelayError.UpstreamClosed, inbound: false, "the primary closed the connection", closedAt).ConfigureAwait(false))
                    {
                        continue;
                    }

                    // The upstream's own end: pass on any partial message as it is, then FIN.
                    var rest = buffer.Slice(whole.End);
                    if (!rest.IsEmpty && !Session.EndReason.Equals(RelayError.NoShadowReady))
                    {
                        foreach (var segment in rest)
                        {
                            output.Write(segment.Span);
                        }

                        Session.AddOut(rest.Length, time.GetTimestamp());
                        await output.FlushAsync().ConfigureAwait(false);
                    }

                    reason = RelayError.UpstreamClosed;
                    break;
                }
            }
        }
        finally
        {
            Session.TrySetEndReason(reason, detail);
            lock (_stateLock)
            {
                _outboundDone = true;
                _outParked.TrySetResult();
            }

            await Upstream.Transport.Input.CompleteAsync().ConfigureAwait(false);
            await output.CompleteAsync().ConfigureAwait(false);
        }
    }

    /// <summary>
    /// An upstream FIN is the session's own end when the client has finished, when a shadow's backend
    /// closed too after the same input, or when the primary still accepts connections (it closed this
    /// one on purpose). A killed process closes its sockets with FIN as well, and then refuses new
    /// connections: that is a failure to splice around.
    /// </summary>
    private async ValueTask<bool> IsNaturalEndAsync()
    {
        if (_clientEnded || !Echo.Policy.Failover)
        {
            return true;
        }

        var length = Echo.Log.Length;
        foreach (var shadow in Echo.Shadows)
        {
            if (shadow.BackendClosed && shadow.AgentApplied >= length)
            {
                SpliceLog.PrimaryClosedItsSession(_manager.Logger, Session.Id, Endpoint.Id, $"the shadow on {shadow.Endpoint.Id} closed too after the same {length} input bytes");
                return true;
            }
        }

        var endpoint = Endpoint;
        if (await UpstreamConnector.AcceptsConnectionsAsync(endpoint.Config.Address, _manager.Time).ConfigureAwait(false) is { } alive)
        {
            SpliceLog.PrimaryClosedItsSession(_manager.Logger, Session.Id, endpoint.Id, $"{endpoint.Config.Address.Host}:{endpoint.Config.Address.Port} is alive: {alive}");
            return true;
        }

        return false;
    }
}
