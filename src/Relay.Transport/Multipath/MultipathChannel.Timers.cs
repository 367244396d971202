using System.Buffers.Binary;
using Relay.Transport.Framing;

namespace Relay.Transport.Multipath;

public sealed partial class MultipathChannel
{
    /// <summary>Quiet ticks in a row (nothing to flush, repair, NACK or ack) before the timer sleeps.</summary>
    private const int IdleAfterQuietTicks = 25;

    private readonly AsyncSignal _tickSignal = new();
    private volatile bool _timerIdle;
    private bool _idleSleepOver;

    /// <summary>Ticks the timer loop ran (for tests: an idle channel ticks at the probe interval).</summary>
    internal long TimerWakeups { get; private set; }

    /// <summary>True while the timer sleeps for want of work.</summary>
    internal bool TimerIdle => _timerIdle;

    private async Task TimerLoopAsync()
    {
        var token = _shutdown.Token;
        using var timer = new PeriodicTimer(_options.TickInterval, _time);

        // An idle sleep ends on _tickSignal, set by new work, by this one-shot timer, or by shutdown:
        // one timer and one registration for the channel's life, instead of a linked token source,
        // a delay and a WhenAny for each of its twenty sleeps a second.
        using var sleepTimer = _time.CreateTimer(static state => ((MultipathChannel)state!).OnIdleSleepOver(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        using var wakeOnShutdown = token.UnsafeRegister(static state => ((AsyncSignal)state!).Set(), _tickSignal);
        var quietTicks = 0;
        try
        {
            while (await timer.WaitForNextTickAsync(token).ConfigureAwait(false))
            {
                if (_closed)
                {
                    continue;
                }

                TimerWakeups++;
                quietTicks = OnTick() ? 0 : quietTicks + 1;
                if (quietTicks >= IdleAfterQuietTicks)
                {
                    // An idle channel (a shadow with nothing to echo, an agent between sessions) ticks
                    // at the probe interval instead of every TickInterval: a tick is a thread-pool
                    // wake-up, and a thousand of them a second cost an idle relay a tenth of a core.
                    // After a sleep that ended for a probe, one quiet tick is enough to sleep again.
                    // The periodic timer itself is stopped meanwhile: it would still fire (and wake the
                    // runtime's timer thread) every TickInterval with nobody waiting for its ticks.
                    timer.Period = Timeout.InfiniteTimeSpan;
                    var woken = true;
                    if (IdleSleepMs(out var wake) is { } sleepMs)
                    {
                        Volatile.Write(ref _idleSleepOver, false);
                        sleepTimer.Change(TimeSpan.FromMilliseconds(sleepMs), Timeout.InfiniteTimeSpan);
                        await wake.ConfigureAwait(false);
                        sleepTimer.Change(Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
                        token.ThrowIfCancellationRequested();
                        woken = !Volatile.Read(ref _idleSleepOver);
                    }

                    _timerIdle = false;
                    timer.Period = _options.TickInterval;
                    quietTicks = woken ? 0 : IdleAfterQuietTicks - 1;
                }
            }
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
            // Shutting down.
        }
        catch (Exception ex)
        {
            Log.TimerLoopFailed(_logger, ex);
        }
    }

    /// <summary>
    /// Before an idle sleep: raises the idle flag, then returns how long to sleep (until the next
    /// probe is due), or null when work turned up meanwhile. <paramref name="wake"/> completes at the
    /// next <see cref="WakeTimerLocked"/>. The flag is raised before the work is re-checked under each
    /// lock, and work is published under the same locks before the flag is read, so a wake-up is
    /// never missed.
    /// </summary>
    private double? IdleSleepMs(out Task wake)
    {
        wake = _tickSignal.WaitAsync();
        _timerIdle = true;
        Interlocked.MemoryBarrier();
        bool busy;
        long nextProbeTicks = long.MaxValue;
        lock (_sendLock)
        {
            busy = SendWorkPendingLocked();
            foreach (var path in _paths)
            {
                nextProbeTicks = Math.Min(nextProbeTicks, path.LastProbeSentTicks);
            }
        }

        if (!busy)
        {
            lock (_recvLock)
            {
                busy = ReceiveWorkPendingLocked();
            }
        }

        if (busy)
        {
            return null;
        }

        return Math.Clamp(
            ElapsedMs(NowTicks, nextProbeTicks + MsToTicks(_options.ProbeInterval.TotalMilliseconds)),
            _options.TickInterval.TotalMilliseconds,
            _options.ProbeInterval.TotalMilliseconds);
    }

    /// <summary>The idle sleep's timer fired: the wake-up is for a probe, not for work.</summary>
    private void OnIdleSleepOver()
    {
        Volatile.Write(ref _idleSleepOver, true);
        _tickSignal.Set();
    }

    /// <summary>Called under either lock after it published work the timer must look after.</summary>
    private void WakeTimerLocked()
    {
        if (_timerIdle)
        {
            _tickSignal.Set();
        }
    }

    private bool SendWorkPendingLocked() => _batchLength > 0 || !AllAckedLocked();

    private bool ReceiveWorkPendingLocked() =>
        _ackPending || _cumulative <= _highestSeen || (_highestSeen >= 0 && _lastAdvertisedWindow != _deliverBase + _received.Length);

    /// <summary>
    /// One tick: flush a lingering batch, retransmit on timeout, probe, detect dead paths, NACK, ack.
    /// Returns false when the channel had nothing to do beyond probing.
    /// </summary>
    internal bool OnTick()
    {
        bool busy;
        var now = NowTicks;
        double nackDelayMs;
        lock (_sendLock)
        {
            if (_batchLength > 0 && now - _batchStartTicks >= MsToTicks(_options.FlushDelay.TotalMilliseconds))
            {
                TryFlushLocked();
            }

            var rtoMs = RtoMsLocked();
            for (var id = _ackedBase; id < _nextBlockId; id++)
            {
                var block = _sent[(int)(id % _sent.Length)];
                if (block.Id == id && block.InFlight &&
                    ElapsedMs(block.LastSentTicks, now) > Math.Min(rtoMs * (1 << Math.Min(block.Retries, 6)), _options.MaxRto.TotalMilliseconds))
                {
                    RepairLocked(block, now);
                }
            }

            ProbeLocked(now);
            nackDelayMs = Math.Max(1.0, 1.25 * SmoothedRttMsLocked());
            busy = SendWorkPendingLocked();
        }

        Span<byte> nack = stackalloc byte[_options.MaxDatagramBytes - WireFormat.OverheadBytes];
        Span<byte> ack = stackalloc byte[AckPayloadBytes];
        int nackLength;
        bool sendAck;
        lock (_recvLock)
        {
            // Measured before the ack below clears what it reports; a keep-alive ack alone is not work.
            busy |= ReceiveWorkPendingLocked();
            nackLength = BuildNackLocked(nack, now, MsToTicks(nackDelayMs));
            busy |= nackLength > 0;
            sendAck = _highestSeen >= 0 &&
                (_ackPending || _lastAdvertisedWindow != _deliverBase + _received.Length || ElapsedMs(_lastAckTicks, now) >= 20);
            if (sendAck)
            {
                BuildAckLocked(ack);
            }
        }

        if (nackLength > 0 || sendAck)
        {
            lock (_sendLock)
            {
                var path = BestPathLocked();
                if (sendAck)
                {
                    SendControlLocked(path, PacketType.Ack, ack);
                }

                if (nackLength > 0)
                {
                    SendControlLocked(path, PacketType.Nack, nack[..nackLength]);
                }
            }
        }

        if (sendAck)
        {
            _windowSignal.Set();
        }

        return busy;
    }

    private void ProbeLocked(long now)
    {
        var probeTicks = MsToTicks(_options.ProbeInterval.TotalMilliseconds);
        Span<byte> probe = stackalloc byte[12];
        foreach (var path in _paths)
        {
            if (path.Alive && path.ProbesSinceAck >= 2)
            {
                var silentMs = ElapsedMs(Math.Max(path.LastProbeAckTicks, path.LastProbeSentTicks - (path.ProbesSinceAck * probeTicks)), now);
                var deadAfterMs = Math.Max(_options.DeadAfter.TotalMilliseconds, 3 * path.SrttMs);
                if (path.LastProbeAckTicks != 0 ? ElapsedMs(path.LastProbeAckTicks, now) > deadAfterMs : path.ProbesSinceAck * _options.ProbeInterval.TotalMilliseconds > deadAfterMs)
                {
                    path.Alive = false;
                    path.ConsecutiveAcks = 0;
                    path.DeadSinceTicks = now;
                    path.DeathCounted = false;
                    Log.PathDead(_logger, path.Index, silentMs);
                }
            }

            if (!path.Alive && !path.DeathCounted && ElapsedMs(path.DeadSinceTicks, now) >= _options.PathFailureConfirmation.TotalMilliseconds)
            {
                path.DeathCounted = NotePathFailureLocked(path, now);
            }

            if (now - path.LastProbeSentTicks >= probeTicks || path.LastProbeSentTicks == 0)
            {
                BinaryPrimitives.WriteUInt32BigEndian(probe, path.NextProbeId++);
                BinaryPrimitives.WriteInt64BigEndian(probe[4..], now);
                SendControlLocked(path, PacketType.Probe, probe);
                path.LastProbeSentTicks = now;
                path.ProbesSinceAck++;
            }
        }
    }

    /// <summary>
    /// NACK entries for incomplete blocks quiet for the NACK delay, and (with k = 0) for blocks below
    /// the highest seen of which nothing arrived.
    /// </summary>
    private int BuildNackLocked(Span<byte> destination, long now, long nackDelayTicks)
    {
        var length = 0;
        var end = Math.Min(_highestSeen, _deliverBase + _received.Length - 1);
        for (var id = _cumulative; id <= end; id++)
        {
            var block = _received[(int)(id % _received.Length)];
            if (block.Id == id && block.Decoded)
            {
                continue;
            }

            if (block.Id != id)
            {
                if (id == _highestSeen)
                {
                    continue;
                }

                ReleaseReceived(block);
                block.Id = id;
                block.K = 0;
                block.LastShardTicks = now;
                block.LastNackTicks = 0;
            }

            if (now - block.LastShardTicks < nackDelayTicks || now - block.LastNackTicks < nackDelayTicks)
            {
                continue;
            }

            int k = block.K, m = block.K == 0 ? 0 : block.M;
            var bitmapBytes = (k + m + 7) / 8;
            if (length + 6 + bitmapBytes > destination.Length)
            {
                break;
            }

            BinaryPrimitives.WriteUInt32BigEndian(destination[length..], (uint)id);
            destination[length + 4] = (byte)k;
            destination[length + 5] = (byte)m;
            var bitmap = destination.Slice(length + 6, bitmapBytes);
            bitmap.Clear();
            for (var i = 0; i < k + m; i++)
            {
                if (block.Present[i])
                {
                    bitmap[i >> 3] |= (byte)(1 << (i & 7));
                }
            }

            length += 6 + bitmapBytes;
            block.LastNackTicks = now;
        }

        return length;
    }
}
