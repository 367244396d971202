using System.Buffers;
using System.Diagnostics;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using Relay.Echo;

namespace Relay.Agent;

/// <summary>What a shadow session reports to the echo connection that owns it.</summary>
internal interface IShadowOwner
{
    /// <summary>Something an ack carries changed; send one within the ack interval.</summary>
    public void AckNeeded(ShadowSession session);

    /// <summary>The shadow cannot go on: tell the relay (ShadowFailed) and forget the session.</summary>
    public void Failed(ShadowSession session, string reason);
}

/// <summary>
/// One shadow session: the agent's own connection to its backend, fed with the session's input in
/// order, whose output is framed, digested and compared with the primary's (docs/echo.md, "Agent").
/// Input goes through an unpaused <see cref="Pipe"/> drained by a writer task, so a slow backend never
/// blocks the echo channel's receive loop; the queued amount is bounded by
/// <see cref="AgentOptions.MaxRetainedOutputBytes"/>. Output is read by one reader task, which after a
/// takeover forwards it to the relay's takeover socket instead.
/// </summary>
internal sealed class ShadowSession : IDisposable
{
    private const int ReadBufferBytes = 16 * 1024;

    // The backend's output is read into a small buffer until a read fills it, then into a large one
    // until 64 reads in a row would have fit the small one: an idle shadow holds 2 KiB, not 16.
    private const int SmallReadBufferBytes = 2 * 1024;
    private const int SmallReadsBeforeShrinking = 64;

    private readonly Lock _gate = new();
    private TaskCompletionSource? _outputWaiter;
    private readonly IShadowOwner _owner;
    private readonly ILogger _logger;
    private readonly long _maxBacklogBytes;
    private readonly MessageStream _output;
    private readonly DigestComparer _comparer;
    private readonly RetainedOutput _retained = new();
    // The reader runs inline on the flush (the echo receive loop): a batch goes to the backend without a
    // thread-pool hand-off per session per shipment.
    private readonly Pipe _input = new(new PipeOptions(readerScheduler: PipeScheduler.Inline, pauseWriterThreshold: 0, resumeWriterThreshold: 0, useSynchronizationContext: false));
    private readonly CancellationTokenSource _stop = new();
    private readonly TaskCompletionSource _forwardReady = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Socket? _backend;
    private Task _writerTask = Task.CompletedTask;
    private Task _readerTask = Task.CompletedTask;
    private long _applied;
    private long _written;
    private long _reportedDelivered;
    private bool _backendClosed;
    private bool _malformed;
    private bool _divergedLogged;
    private bool _detached;
    private bool _closed;
    private Socket? _forwardTo;
    private int _ackQueued;
    private long _forwardedFromBackend;
    private AckFrame _lastAck = new(-1, -1, -1, DigestStatus.Pending, -1, false);

    public ShadowSession(long relayId, in OpenFrame open, long maxBacklogBytes, IShadowOwner owner, ILogger logger)
    {
        RelayId = relayId;
        SessionId = open.SessionId;
        Codec = open.Codec;
        _owner = owner;
        _logger = logger;
        _maxBacklogBytes = maxBacklogBytes;
        _comparer = new DigestComparer(AgentDefaults.DigestCapacity);
        _output = new MessageStream(MessageFramer.Create(new CodecOptions(open.Codec, open.MaxMessageBytes), StreamDirection.Response), _comparer.Shadow);
    }

    public long RelayId { get; }

    public long SessionId { get; }

    public MessageCodec Codec { get; }

    /// <summary>True once a takeover owns the session: echo frames for it are ignored.</summary>
    public bool IsDetached
    {
        get
        {
            lock (_gate)
            {
                return _detached;
            }
        }
    }

    public long Applied
    {
        get
        {
            lock (_gate)
            {
                return _applied;
            }
        }
    }

    /// <summary>Connects to the backend and starts the writer and reader tasks; throws on failure.</summary>
    public async Task ConnectAsync(EndPoint backend, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            using var connectTimeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _stop.Token);
            connectTimeout.CancelAfter(timeout);
            try
            {
                await socket.ConnectAsync(backend, connectTimeout.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested && !_stop.IsCancellationRequested)
            {
                throw new TimeoutException($"no connection within {timeout.TotalMilliseconds:F0} ms");
            }

            lock (_gate)
            {
                ObjectDisposedException.ThrowIf(_closed, this);
                _backend = socket;
            }
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        _writerTask = Task.Run(() => WriteInputAsync(socket), CancellationToken.None);
        _readerTask = Task.Run(() => ReadOutputAsync(socket), CancellationToken.None);
    }

    /// <summary>
    /// Applies session input at <paramref name="offset"/>: the part below <c>applied</c> is a duplicate
    /// and skipped; a start beyond it is a gap. Returns false with the reason on a gap or a backlog.
    /// </summary>
    public bool TryApply(long offset, ReadOnlySpan<byte> bytes, out string reason)
    {
        reason = "";
        lock (_gate)
        {
            if (_detached || _closed)
            {
                return true;
            }

            if (offset > _applied)
            {
                reason = $"input gap: bytes from offset {offset} arrived, but only {_applied} byte(s) were applied";
                return false;
            }

            var skip = _applied - offset;
            if (skip >= bytes.Length)
            {
                return true;
            }

            var fresh = bytes[(int)skip..];
            _input.Writer.Write(fresh);
            var flush = _input.Writer.FlushAsync();

            // pauseWriterThreshold 0: a flush never waits, so the channel's receive loop never blocks here.
            Debug.Assert(flush.IsCompleted, "an unpaused pipe flushes synchronously");
            flush.GetAwaiter().GetResult();
            _applied += fresh.Length;
            if (_applied - Volatile.Read(ref _written) > _maxBacklogBytes)
            {
                reason = $"input backlog: the backend has not read {_applied - Volatile.Read(ref _written)} byte(s) of input, above the limit of {_maxBacklogBytes}";
                return false;
            }
        }

        QueueAck();
        return true;
    }

    /// <summary>Records the primary's digests of a Digests frame and the relay's delivered count.</summary>
    public void AddDigests(ReadOnlySpan<byte> frame, int count, long delivered)
    {
        lock (_gate)
        {
            if (_detached || _closed)
            {
                return;
            }

            for (var i = 0; i < count; i++)
            {
                _comparer.AddPrimary(EchoWire.ReadDigestEntry(frame, i));
            }

            _reportedDelivered = Math.Max(_reportedDelivered, delivered);
            TrimRetainedLocked();
            CheckDivergedLocked();
        }

        QueueAck();
    }

    /// <summary>Called by the ack sender: clears the queued mark, and gives the ack unless it equals the last one.</summary>
    public bool TryTakeAck(out AckFrame ack)
    {
        Volatile.Write(ref _ackQueued, 0);
        lock (_gate)
        {
            ack = default;
            if (_detached || _closed)
            {
                return false;
            }

            var status = StatusLocked(out var divergedIndex);
            ack = new AckFrame(SessionId, _applied, Codec == MessageCodec.Raw ? _output.BytesFed : _output.Messages, status, divergedIndex, _backendClosed);
            if (ack == _lastAck)
            {
                return false;
            }

            _lastAck = ack;
            return true;
        }
    }

    /// <summary>Why this shadow cannot take over now, or null.</summary>
    public string? TakeoverObstacle()
    {
        lock (_gate)
        {
            return TakeoverObstacleLocked();
        }
    }

    /// <summary>
    /// Null when the output has reached <paramref name="delivered"/> or nothing more can come (an
    /// obstacle); otherwise a task that completes at the backend's next output or end. A takeover
    /// waits on it instead of polling, so the agent answers within microseconds of the output.
    /// Allocates only while a takeover waits.
    /// </summary>
    public Task? WaitForOutput(long delivered)
    {
        lock (_gate)
        {
            if ((Codec == MessageCodec.Raw ? _output.BytesFed : _output.Messages) >= delivered || TakeoverObstacleLocked() is not null)
            {
                return null;
            }

            _outputWaiter ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            return _outputWaiter.Task;
        }
    }

    private void WakeOutputWaiter()
    {
        TaskCompletionSource? waiter;
        lock (_gate)
        {
            waiter = _outputWaiter;
            _outputWaiter = null;
        }

        waiter?.TrySetResult();
    }

    /// <summary>How far the backend's output has come, in the unit of <c>delivered</c> (messages, or bytes for raw).</summary>
    public long OutputProgress()
    {
        lock (_gate)
        {
            return Codec == MessageCodec.Raw ? _output.BytesFed : _output.Messages;
        }
    }

    /// <summary>
    /// Detaches the session from echo for a takeover at <paramref name="delivered"/>: computes the cut,
    /// and from now on the reader task forwards new output to <paramref name="takeover"/> once
    /// <see cref="ReleaseForwarding"/> is called. Returns the retained output from the cut on.
    /// </summary>
    public bool TryDetach(long delivered, Socket takeover, out long cut, out ReadOnlyMemory<byte> pending, out string reason)
    {
        pending = default;
        cut = 0;
        lock (_gate)
        {
            if (TakeoverObstacleLocked() is { } obstacle)
            {
                reason = obstacle;
                return false;
            }

            if (!TryCutLocked(delivered, out cut))
            {
                reason = Codec == MessageCodec.Raw
                    ? $"the backend's output has {_output.BytesFed} byte(s), fewer than the {delivered} delivered"
                    : $"the digest ring no longer holds message {delivered - 1} (the shadow produced {_output.Messages})";
                return false;
            }

            if (cut < _retained.Start || cut > _retained.End)
            {
                reason = $"the cut at output byte {cut} is outside the retained output [{_retained.Start}, {_retained.End})";
                return false;
            }

            pending = _retained.From(cut);
            _detached = true;
            _forwardTo = takeover;
            reason = "";
            return true;
        }
    }

    /// <summary>Lets the reader task forward the backend's output (call after the retained bytes were written).</summary>
    public void ReleaseForwarding() => _forwardReady.TrySetResult();

    /// <summary>
    /// After a takeover: drains the queued input into the backend, then forwards the takeover socket to
    /// the backend while the reader task forwards the other way, with half-closes, until both end.
    /// Returns the bytes forwarded each way.
    /// </summary>
    public async Task<(long ToBackend, long FromBackend)> SpliceAsync(Socket takeover, CancellationToken cancellationToken)
    {
        Socket backend;
        lock (_gate)
        {
            backend = _backend ?? throw new InvalidOperationException("the shadow has no backend connection");
            _input.Writer.Complete();
        }

        // Closing the session (Close cancels _stop) also ends the relay-to-backend direction, which
        // may be waiting on a client that waits for an answer the dead backend will never send.
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _stop.Token);
        var toBackend = ForwardInputAsync(takeover, backend, linked.Token);
        var first = await Task.WhenAny(toBackend, _readerTask).ConfigureAwait(false);
        if (first.IsFaulted || first.IsCanceled)
        {
            // A direction failed (the backend reset, or writing to it failed): the relay must learn it
            // now and as a failure, so the takeover connection ends with a reset, not a FIN that
            // could be the backend's ordinary end of the session.
            try
            {
                takeover.LingerState = new LingerOption(true, 0);
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
            {
                // Already closed: the relay has seen it end.
            }

            Close();
        }

        await Task.WhenAll(ObserveAsync(toBackend), ObserveAsync(_readerTask)).ConfigureAwait(false);
        return (toBackend.IsCompletedSuccessfully ? toBackend.Result : -1, Interlocked.Read(ref _forwardedFromBackend));
    }

    /// <summary>Ends the session: closes the backend connection and returns pooled memory. Idempotent.</summary>
    public void Close()
    {
        lock (_gate)
        {
            if (_closed)
            {
                return;
            }

            _closed = true;
            _input.Writer.Complete();
            _retained.Dispose();
        }

        _stop.Cancel();
        _forwardReady.TrySetResult();
        _backend?.Dispose();
        WakeOutputWaiter();
    }

    /// <summary>Same as <see cref="Close"/>.</summary>
    public void Dispose() => Close();

    private string? TakeoverObstacleLocked()
    {
        if (_closed)
        {
            return "the shadow session has ended";
        }

        if (_detached)
        {
            return "the session was already taken over";
        }

        if (StatusLocked(out var divergedIndex) == DigestStatus.Diverged)
        {
            return _malformed
                ? $"the shadow's backend output is malformed ({FramingErrorText.Describe(_output.Error)}) at message {divergedIndex}"
                : $"the shadow diverged from the primary at message {divergedIndex}";
        }

        if (_backendClosed)
        {
            return "the shadow's backend closed its connection";
        }

        return _backend is null ? "the shadow is not connected to its backend yet" : null;
    }

    private DigestStatus StatusLocked(out long divergedIndex)
    {
        if (_malformed)
        {
            divergedIndex = _output.Messages;
            return DigestStatus.Diverged;
        }

        var status = _comparer.Compare();
        divergedIndex = _comparer.DivergedIndex;
        return status;
    }

    private bool TryCutLocked(long delivered, out long cut)
    {
        cut = 0;
        if (Codec == MessageCodec.Raw)
        {
            cut = delivered;
            return delivered <= _output.BytesFed;
        }

        if (delivered == 0)
        {
            return true;
        }

        if (!_comparer.Shadow.TryGet(delivered - 1, out var entry))
        {
            return false;
        }

        cut = entry.EndOffset;
        return true;
    }

    private void TrimRetainedLocked()
    {
        long trimTo;
        if (Codec == MessageCodec.Raw)
        {
            trimTo = _reportedDelivered;
        }
        else if (_reportedDelivered == 0)
        {
            return;
        }
        else if (_output.Messages < _reportedDelivered)
        {
            // The shadow is behind the primary: all it has produced in whole messages is below the cut.
            trimTo = _output.LastBoundary;
        }
        else if (!TryCutLocked(_reportedDelivered, out trimTo))
        {
            return;
        }

        _retained.TrimTo(trimTo);
    }

    private void CheckDivergedLocked()
    {
        if (!_divergedLogged && StatusLocked(out var index) == DigestStatus.Diverged)
        {
            _divergedLogged = true;
            if (!_malformed)
            {
                AgentLog.Diverged(_logger, SessionId, RelayId, index);
            }
        }
    }

    private void QueueAck()
    {
        if (Interlocked.Exchange(ref _ackQueued, 1) == 0)
        {
            _owner.AckNeeded(this);
        }
    }

    private async Task WriteInputAsync(Socket backend)
    {
        var reader = _input.Reader;
        Exception? error = null;
        try
        {
            while (true)
            {
                var result = await reader.ReadAsync(_stop.Token).ConfigureAwait(false);
                var buffer = result.Buffer;
                foreach (var segment in buffer)
                {
                    await backend.SendAsync(segment, SocketFlags.None, _stop.Token).ConfigureAwait(false);
                }

                Interlocked.Add(ref _written, buffer.Length);
                reader.AdvanceTo(buffer.End);
                if (result.IsCompleted)
                {
                    return;
                }
            }
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException or OperationCanceledException)
        {
            error = ex;
        }
        finally
        {
            await reader.CompleteAsync(error).ConfigureAwait(false);
        }

        if (error is SocketException socketError)
        {
            FailFromTask($"writing to the backend failed: {socketError.SocketErrorCode}");
        }
    }

    private async Task ReadOutputAsync(Socket backend)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(SmallReadBufferBytes);
        var large = false;
        var smallReads = 0;
        try
        {
            while (true)
            {
                if (large != buffer.Length >= ReadBufferBytes)
                {
                    ArrayPool<byte>.Shared.Return(buffer);
                    buffer = ArrayPool<byte>.Shared.Rent(large ? ReadBufferBytes : SmallReadBufferBytes);
                }

                var read = await backend.ReceiveAsync(buffer, SocketFlags.None, _stop.Token).ConfigureAwait(false);
                if (read == buffer.Length)
                {
                    (large, smallReads) = (true, 0);
                }
                else if (large)
                {
                    smallReads = read <= SmallReadBufferBytes ? smallReads + 1 : 0;
                    if (smallReads >= SmallReadsBeforeShrinking)
                    {
                        (large, smallReads) = (false, 0);
                    }
                }

                Socket? forward;
                string? failure = null;
                lock (_gate)
                {
                    if (_closed)
                    {
                        return;
                    }

                    forward = _forwardTo;
                    if (forward is null)
                    {
                        if (read == 0)
                        {
                            _backendClosed = true;
                        }
                        else
                        {
                            failure = OnOutputLocked(buffer.AsSpan(0, read));
                        }
                    }
                }

                if (forward is null)
                {
                    WakeOutputWaiter();
                    if (failure is not null)
                    {
                        FailFromTask(failure);
                        return;
                    }

                    QueueAck();
                    if (read == 0)
                    {
                        return;
                    }

                    continue;
                }

                await _forwardReady.Task.ConfigureAwait(false);
                if (read == 0)
                {
                    ShutdownSend(forward);
                    return;
                }

                await forward.SendAsync(buffer.AsMemory(0, read), SocketFlags.None, _stop.Token).ConfigureAwait(false);
                Interlocked.Add(ref _forwardedFromBackend, read);
            }
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException or OperationCanceledException)
        {
            bool echoing, forwarding;
            lock (_gate)
            {
                echoing = !_closed && _forwardTo is null;
                forwarding = !_closed && _forwardTo is not null;
            }

            if (echoing && ex is SocketException socketError)
            {
                FailFromTask($"reading from the backend failed: {socketError.SocketErrorCode}");
            }
            else if (forwarding)
            {
                // A spliced session's direction failed: SpliceAsync observes it and ends the other.
                throw;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>Frames, digests and retains one read of backend output; returns a failure reason or null.</summary>
    private string? OnOutputLocked(ReadOnlySpan<byte> data)
    {
        if (!_malformed && !_output.Feed(data))
        {
            _malformed = true;
            AgentLog.OutputMalformed(_logger, SessionId, RelayId, _output.ErrorOffset, FramingErrorText.Describe(_output.Error));
        }

        if (_malformed)
        {
            // A diverged shadow can never take over: keep nothing.
            return null;
        }

        _retained.Append(data);
        TrimRetainedLocked();
        CheckDivergedLocked();
        if (_retained.Length > _maxBacklogBytes)
        {
            return $"output backlog: {_retained.Length} byte(s) of backend output past the relay's delivered cut, above the limit of {_maxBacklogBytes}";
        }

        return null;
    }

    private async Task<long> ForwardInputAsync(Socket takeover, Socket backend, CancellationToken cancellationToken)
    {
        // The echo input queued before the takeover goes first.
        await _writerTask.ConfigureAwait(false);
        var buffer = ArrayPool<byte>.Shared.Rent(ReadBufferBytes);
        long total = 0;
        try
        {
            while (true)
            {
                var read = await takeover.ReceiveAsync(buffer, SocketFlags.None, cancellationToken).ConfigureAwait(false);
                if (read == 0)
                {
                    ShutdownSend(backend);
                    return total;
                }

                await backend.SendAsync(buffer.AsMemory(0, read), SocketFlags.None, cancellationToken).ConfigureAwait(false);
                total += read;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private void FailFromTask(string reason)
    {
        lock (_gate)
        {
            if (_closed || _detached)
            {
                return;
            }
        }

        _owner.Failed(this, reason);
    }

    private static void ShutdownSend(Socket socket)
    {
        try
        {
            socket.Shutdown(SocketShutdown.Send);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            // The peer is already gone; the other direction ends on its own.
        }
    }

    private static async Task ObserveAsync(Task task)
    {
        try
        {
            await task.ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException or OperationCanceledException or IOException)
        {
            // One direction of a spliced session failed; Close() has ended the other.
        }
    }
}
