using System.Buffers.Binary;
using Relay.Transport.Compression;
using Relay.Transport.Fec;
using Relay.Transport.Framing;
using Relay.Transport.Paths;

namespace Relay.Transport.Multipath;

public sealed partial class MultipathChannel
{
    // At most this many datagrams go into one GSO send (the kernel allows 64 and 64 KiB).
    private const int MaxSegmentsPerSend = 40;

    private readonly object _sendLock = new();
    private readonly AsyncSignal _windowSignal = new();
    private readonly byte[] _batch;
    private readonly byte[] _compressed;
    private readonly BatchCompressor _compressor = new();
    private readonly SentBlock[] _sent;
    private readonly ReedSolomon?[,] _encoders;
    private readonly byte[] _plain;
    private readonly byte[] _segments;
    private int _batchLength;
    private int _batchFrames;
    private long _batchStartTicks;
    private long _nextBlockId;
    private long _ackedBase;
    private long _peerWindowLimit;
    private long _pacingUntilTicks;
    private long _lastPathFailureTicks = long.MinValue;

    // Round-trip time measured from a block's first send to its acknowledgement (blocks sent once
    // only, as Karn's rule asks): unlike the probes' RTT it includes the peer's ack delay and both
    // sides' scheduling, which is what a retransmit timeout has to wait out.
    private double _ackSrttMs;
    private double _ackRttVarMs;
    private bool _hasAckRtt;

    /// <summary>
    /// Queues one frame. Completes synchronously while the send window has room; otherwise waits for
    /// acknowledgements (backpressure). Frames are sent within <see cref="MultipathChannelOptions.FlushDelay"/>
    /// or as soon as a block fills; <see cref="Flush"/> sends a partial block at once.
    /// </summary>
    public ValueTask SendAsync(ReadOnlyMemory<byte> frame, CancellationToken cancellationToken = default)
    {
        if (frame.Length < 1 || frame.Length > _options.MaxFrameBytes)
        {
            throw new ArgumentOutOfRangeException(nameof(frame), $"Frames are 1 to {_options.MaxFrameBytes} bytes.");
        }

        ObjectDisposedException.ThrowIf(_closed, this);
        lock (_sendLock)
        {
            if (TryAppendLocked(frame.Span))
            {
                return _pacingUntilTicks > NowTicks ? PaceAsync(cancellationToken) : ValueTask.CompletedTask;
            }
        }

        return SendSlowAsync(frame, cancellationToken);
    }

    /// <summary>Sends the partly filled block now, if the window allows.</summary>
    public void Flush()
    {
        lock (_sendLock)
        {
            TryFlushLocked();
        }
    }

    /// <summary>
    /// Sends the partly filled block and completes once the peer has acknowledged every block sent
    /// so far (for example before closing, or before a takeover that needs the data delivered).
    /// </summary>
    public async Task DrainAsync(CancellationToken cancellationToken = default)
    {
        while (true)
        {
            Task wait;
            lock (_sendLock)
            {
                ObjectDisposedException.ThrowIf(_closed, this);
                wait = _windowSignal.WaitAsync();
                TryFlushLocked();
                if (_batchLength == 0 && AllAckedLocked())
                {
                    return;
                }
            }

            await wait.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    private bool AllAckedLocked()
    {
        for (var id = _ackedBase; id < _nextBlockId; id++)
        {
            var block = _sent[(int)(id % _sent.Length)];
            if (block.Id == id && block.InFlight)
            {
                return false;
            }
        }

        return true;
    }

    private async ValueTask SendSlowAsync(ReadOnlyMemory<byte> frame, CancellationToken cancellationToken)
    {
        while (true)
        {
            Task wait;
            lock (_sendLock)
            {
                ObjectDisposedException.ThrowIf(_closed, this);
                wait = _windowSignal.WaitAsync();
                if (TryAppendLocked(frame.Span))
                {
                    break;
                }
            }

            await wait.WaitAsync(cancellationToken).ConfigureAwait(false);
        }

        if (_pacingUntilTicks > NowTicks)
        {
            await PaceAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    private async ValueTask PaceAsync(CancellationToken cancellationToken)
    {
        var waitMs = ElapsedMs(NowTicks, _pacingUntilTicks);
        if (waitMs > 0)
        {
            await Task.Delay(TimeSpan.FromMilliseconds(waitMs), _time, cancellationToken).ConfigureAwait(false);
        }
    }

    private bool TryAppendLocked(ReadOnlySpan<byte> frame)
    {
        if (_batchLength + 2 + frame.Length > _batch.Length && !TryFlushLocked())
        {
            return false;
        }

        if (_batchLength == 0)
        {
            _batchStartTicks = NowTicks;
            WakeTimerLocked();
        }

        BinaryPrimitives.WriteUInt16BigEndian(_batch.AsSpan(_batchLength), (ushort)frame.Length);
        frame.CopyTo(_batch.AsSpan(_batchLength + 2));
        _batchLength += 2 + frame.Length;
        _batchFrames++;

        // A block that cannot take another minimal frame goes now rather than after the flush delay.
        if (_batch.Length - _batchLength < 3)
        {
            TryFlushLocked();
        }

        return true;
    }

    private bool WindowOpenLocked() =>
        _nextBlockId - _ackedBase < _sent.Length && _nextBlockId < _peerWindowLimit;

    /// <summary>Seals the current batch into a block and sends it; false when the window is full.</summary>
    private bool TryFlushLocked()
    {
        if (_batchLength == 0)
        {
            return true;
        }

        if (!WindowOpenLocked() || _closed)
        {
            return false;
        }

        var id = _nextBlockId++;
        var block = _sent[(int)(id % _sent.Length)];
        ReleaseSent(block);

        var raw = _batch.AsSpan(0, _batchLength);
        var compressedLength = _options.EnableCompression ? _compressor.TryCompress(raw, _compressed) : 0;
        var body = compressedLength > 0 ? _compressed.AsSpan(0, compressedLength) : raw;
        // As few shards as the largest shard size allows, all of one size: a block pads at most k - 1
        // bytes, and a small block (an ack, a digest) travels in small datagrams, not full-size ones.
        var total = WireFormat.BlockHeaderBytes + body.Length;
        var k = (total + _shardBytes - 1) / _shardBytes;
        var s = (total + k - 1) / k;
        var live = CountLivePathsLocked();

        // A shard's chance of loss is that of the path it is sent on, so the block sees the live paths'
        // forecasts weighted by their shares (the max would price a clean path's shards at the lossy
        // path's rate, and the max of two noisy estimates is biased upwards).
        double weighted = 0, shares = 0;
        foreach (var path in _paths)
        {
            if (path.Alive)
            {
                weighted += path.Share * path.ForecastLoss;
                shares += path.Share;
            }
        }

        var loss = Math.Max(_options.MinAssumedLoss, shares > 0 ? weighted / shares : 0);

        var m = RedundancyPolicy.ChooseParity(k, loss, _options.TargetBlockFailure, _options.MinParityShards, _options.MaxParityShards, ProtectAgainstPathLossLocked() ? live : 1);
        var buffer = Rent((k + m) * s);
        var content = buffer.AsSpan(0, k * s);
        content[0] = compressedLength > 0 ? (byte)1 : (byte)0;
        BinaryPrimitives.WriteUInt32BigEndian(content[1..], (uint)_batchLength);
        BinaryPrimitives.WriteUInt32BigEndian(content[5..], (uint)body.Length);
        body.CopyTo(content[WireFormat.BlockHeaderBytes..]);
        content[(WireFormat.BlockHeaderBytes + body.Length)..].Clear();
        if (m > 0)
        {
            var encoder = _encoders[k, m] ??= new ReedSolomon(k, m);
            encoder.Encode(content, buffer.AsSpan(k * s, m * s), s);
        }

        block.Id = id;
        block.K = k;
        block.M = m;
        block.ShardBytes = s;
        block.Buffer = buffer;
        block.InFlight = true;
        block.Retries = 0;
        block.HeldKnown = false;
        Array.Clear(block.Held);
        block.LastSentTicks = NowTicks;
        block.FirstSentTicks = block.LastSentTicks;

        Span<byte> all = stackalloc byte[k + m];
        for (var i = 0; i < all.Length; i++)
        {
            all[i] = (byte)i;
        }

        SendShardsLocked(block, all);
        _counters.BlocksSent++;
        _counters.FramesSent += _batchFrames;
        _counters.CurrentK = k;
        _counters.CurrentM = m;
        _batchLength = 0;
        _batchFrames = 0;
        return true;
    }

    private bool ProtectAgainstPathLossLocked() => _options.PathLossParity switch
    {
        PathLossParity.Always => true,
        PathLossParity.AfterPathFailure => _lastPathFailureTicks != long.MinValue &&
            ElapsedMs(_lastPathFailureTicks, NowTicks) < _options.PathFailureMemory.TotalMilliseconds,
        _ => false,
    };

    /// <summary>
    /// Called under the send lock once <paramref name="dead"/> has been dead for
    /// <see cref="MultipathChannelOptions.PathFailureConfirmation"/>. It counts as a path failure (and
    /// returns true) only if another path had a probe answered within two probe intervals: when every
    /// path goes quiet together, the peer or this host stalled (a loaded machine does), and raising
    /// parity for that would only cost bandwidth.
    /// </summary>
    private bool NotePathFailureLocked(PathState dead, long now)
    {
        var recent = MsToTicks(2 * _options.ProbeInterval.TotalMilliseconds);
        foreach (var path in _paths)
        {
            if (path != dead && path.Alive && path.LastProbeAckTicks != 0 && now - path.LastProbeAckTicks <= recent)
            {
                _lastPathFailureTicks = now;
                return true;
            }
        }

        return false;
    }

    /// <summary>Releases an acknowledged block; a block sent once gives an RTT sample (RFC 6298 smoothing).</summary>
    private void AcknowledgeLocked(SentBlock block, long now)
    {
        if (block.InFlight && block.Retries == 0)
        {
            var sample = ElapsedMs(block.FirstSentTicks, now);
            if (!_hasAckRtt)
            {
                (_ackSrttMs, _ackRttVarMs, _hasAckRtt) = (sample, sample / 2, true);
            }
            else
            {
                _ackRttVarMs = (0.75 * _ackRttVarMs) + (0.25 * Math.Abs(_ackSrttMs - sample));
                _ackSrttMs = (0.875 * _ackSrttMs) + (0.125 * sample);
            }
        }

        ReleaseSent(block);
    }

    private int CountLivePathsLocked()
    {
        var live = 0;
        foreach (var path in _paths)
        {
            if (path.Alive)
            {
                live++;
            }
        }

        return live;
    }

    /// <summary>
    /// Sends the given shards of a block, assigned to live paths by smooth weighted round robin over
    /// the paths' shares, with no path carrying more than max(ceil(n / live), m) of them, so that one
    /// lost path costs at most m shards whenever the path count allows it.
    /// </summary>
    private void SendShardsLocked(SentBlock block, ReadOnlySpan<byte> indices)
    {
        var n = indices.Length;
        var live = CountLivePathsLocked();
        var useAll = live == 0;
        if (useAll)
        {
            live = _paths.Length;
        }

        var cap = Math.Max((n + live - 1) / live, block.M);
        Span<byte> assigned = stackalloc byte[n];
        Span<int> perPath = stackalloc int[_paths.Length];
        double total = 0;
        foreach (var path in _paths)
        {
            if (useAll || path.Alive)
            {
                total += path.Share;
            }
        }

        for (var i = 0; i < n; i++)
        {
            var best = -1;
            foreach (var path in _paths)
            {
                if (!(useAll || path.Alive))
                {
                    continue;
                }

                path.WrrCurrent += path.Share;
                if (perPath[path.Index] < cap && (best < 0 || path.WrrCurrent > _paths[best].WrrCurrent))
                {
                    best = path.Index;
                }
            }

            _paths[best].WrrCurrent -= total;
            perPath[best]++;
            assigned[i] = (byte)best;
        }

        var datagramBytes = WireFormat.OverheadBytes + WireFormat.DataShardHeaderBytes + block.ShardBytes;
        foreach (var path in _paths)
        {
            if (perPath[path.Index] == 0)
            {
                continue;
            }

            var count = 0;
            for (var i = 0; i < n; i++)
            {
                if (assigned[i] != path.Index)
                {
                    continue;
                }

                SealShardLocked(path, block, indices[i], _segments.AsSpan(count * datagramBytes, datagramBytes));
                count++;
                if ((count + 1) * datagramBytes > _segments.Length)
                {
                    SendSegmentsLocked(path, datagramBytes, count);
                    count = 0;
                }
            }

            if (count > 0)
            {
                SendSegmentsLocked(path, datagramBytes, count);
            }
        }
    }

    private void SealShardLocked(PathState path, SentBlock block, int index, Span<byte> destination)
    {
        var payload = _plain.AsSpan(0, WireFormat.DataShardHeaderBytes + block.ShardBytes);
        BinaryPrimitives.WriteUInt32BigEndian(payload, (uint)block.Id);
        payload[4] = (byte)index;
        payload[5] = (byte)block.K;
        payload[6] = (byte)block.M;
        payload[7] = 0;
        block.Buffer.AsSpan(index * block.ShardBytes, block.ShardBytes).CopyTo(payload[WireFormat.DataShardHeaderBytes..]);
        _sealer.Seal(PacketType.Data, (byte)path.Index, NextPacketNumberLocked(path), payload, destination);
    }

    private ulong NextPacketNumberLocked(PathState path)
    {
        var pn = path.NextPacketNumber++;
        if (pn >= WireFormat.MaxPacketNumber)
        {
            // Never reached in practice (2^62 datagrams); refuse rather than reuse a nonce.
            _closed = true;
            throw new InvalidOperationException("Packet numbers exhausted on path " + path.Index + ".");
        }

        return pn;
    }

    private void SendSegmentsLocked(PathState path, int datagramBytes, int count)
    {
        var ok = path.Socket.SendSegments(_segments.AsSpan(0, datagramBytes * count), datagramBytes, count);
        AccountSendLocked(path, ok, count, datagramBytes * count);
    }

    private void AccountSendLocked(PathState path, bool ok, int packets, int bytes)
    {
        if (!ok)
        {
            path.SendFailures++;
            return;
        }

        path.PacketsSent += packets;
        path.BytesSent += bytes;
        var rate = _options.PathRateBytesPerSecond;
        if (rate > 0)
        {
            // Token bucket, burst of 64 KiB: a path over its rate makes SendAsync wait (pacing).
            var now = NowTicks;
            path.Tokens = Math.Min(65536, path.Tokens + (ElapsedMs(path.LastRefillTicks, now) * rate / 1000.0)) - bytes;
            path.LastRefillTicks = now;
            if (path.Tokens < 0)
            {
                var until = now + MsToTicks(-path.Tokens * 1000.0 / rate);
                _pacingUntilTicks = Math.Max(_pacingUntilTicks, until);
            }
        }
    }

    /// <summary>Seals and sends one control packet (ack, nack, probe, probe-ack, close) on <paramref name="path"/>.</summary>
    private void SendControlLocked(PathState path, PacketType type, ReadOnlySpan<byte> payload)
    {
        if (_disposed != 0 && type != PacketType.Close)
        {
            return;
        }

        var length = WireFormat.OverheadBytes + payload.Length;
        var datagram = _segments.AsSpan(0, length);
        _sealer.Seal(type, (byte)path.Index, NextPacketNumberLocked(path), payload, datagram);
        AccountSendLocked(path, path.Socket.Send(datagram), 1, length);
    }

    private PathState BestPathLocked()
    {
        PathState? best = null;
        foreach (var path in _paths)
        {
            if (path.Alive && (best is null || path.ForecastRttMs * (1 + (4 * path.ForecastLoss)) < best.ForecastRttMs * (1 + (4 * best.ForecastLoss))))
            {
                best = path;
            }
        }

        return best ?? _paths[0];
    }

    private void HandleAck(ReadOnlySpan<byte> payload)
    {
        if (payload.Length != 16)
        {
            _counters.Drop(DropReason.Malformed);
            return;
        }

        lock (_sendLock)
        {
            var cumulative = ExpandId(BinaryPrimitives.ReadUInt32BigEndian(payload), _ackedBase);
            var selective = BinaryPrimitives.ReadUInt64BigEndian(payload[4..]);
            var window = ExpandId(BinaryPrimitives.ReadUInt32BigEndian(payload[12..]), _ackedBase);
            if (cumulative > _nextBlockId || cumulative < _ackedBase - _sent.Length)
            {
                _counters.Drop(DropReason.Malformed);
                return;
            }

            var now = NowTicks;
            for (var id = _ackedBase; id < cumulative; id++)
            {
                AcknowledgeLocked(_sent[(int)(id % _sent.Length)], now);
            }

            _ackedBase = Math.Max(_ackedBase, cumulative);
            for (var i = 0; i < 64 && selective != 0; i++, selective >>= 1)
            {
                var id = cumulative + 1 + i;
                if ((selective & 1) != 0 && id < _nextBlockId)
                {
                    var block = _sent[(int)(id % _sent.Length)];
                    if (block.Id == id)
                    {
                        AcknowledgeLocked(block, now);
                    }
                }
            }

            _peerWindowLimit = Math.Max(_peerWindowLimit, window);
            if (_batchLength > 0 && NowTicks - _batchStartTicks >= MsToTicks(_options.FlushDelay.TotalMilliseconds))
            {
                TryFlushLocked();
            }
        }

        _windowSignal.Set();
    }

    private void HandleNack(ReadOnlySpan<byte> payload)
    {
        lock (_sendLock)
        {
            var now = NowTicks;
            var minGap = MsToTicks(Math.Max(0.5, SmoothedRttMsLocked() / 2));
            while (payload.Length >= 6)
            {
                var id = ExpandId(BinaryPrimitives.ReadUInt32BigEndian(payload), _ackedBase);
                int k = payload[4], m = payload[5];
                var bitmapBytes = (k + m + 7) / 8;
                if ((k == 0 && m != 0) || k + m > 255 || payload.Length < 6 + bitmapBytes)
                {
                    _counters.Drop(DropReason.Malformed);
                    return;
                }

                var bitmap = payload.Slice(6, bitmapBytes);
                payload = payload[(6 + bitmapBytes)..];
                if (id < _ackedBase || id >= _nextBlockId)
                {
                    continue;
                }

                var block = _sent[(int)(id % _sent.Length)];
                if (block.Id != id || !block.InFlight || (k != 0 && (k != block.K || m != block.M)))
                {
                    continue;
                }

                Array.Clear(block.Held);
                for (var i = 0; i < k + m; i++)
                {
                    block.Held[i] = (bitmap[i >> 3] & (1 << (i & 7))) != 0;
                }

                block.HeldKnown = true;
                if (now - block.LastSentTicks >= minGap)
                {
                    RepairLocked(block, now);
                }
            }
        }
    }

    /// <summary>Sends the shards the receiver lacks, k - held of them plus one spare, data shards first.</summary>
    private void RepairLocked(SentBlock block, long now)
    {
        int k = block.K, n = block.K + block.M;
        var held = 0;
        if (block.HeldKnown)
        {
            for (var i = 0; i < n; i++)
            {
                if (block.Held[i])
                {
                    held++;
                }
            }
        }

        var want = Math.Max(1, k - held) + 1;
        Span<byte> indices = stackalloc byte[n];
        var count = 0;
        for (var i = 0; i < n && count < want; i++)
        {
            if (!block.HeldKnown || !block.Held[i])
            {
                indices[count++] = (byte)i;
            }
        }

        if (count == 0)
        {
            return;
        }

        SendShardsLocked(block, indices[..count]);
        if (block.Retries == 0)
        {
            _counters.BlocksRepaired++;
        }

        block.Retries++;
        block.LastSentTicks = now;
        _counters.RetransmittedShards += count;
    }

    private void ReleaseSent(SentBlock block)
    {
        block.InFlight = false;
        Return(ref block.Buffer);
    }

    private double SmoothedRttMsLocked()
    {
        double rtt = 0;
        foreach (var path in _paths)
        {
            if (path.Alive && path.HasRtt)
            {
                rtt = Math.Max(rtt, path.SrttMs);
            }
        }

        return rtt;
    }

    private double RtoMsLocked()
    {
        double rto = 0;
        var any = false;
        foreach (var path in _paths)
        {
            if (path.Alive && path.HasRtt)
            {
                rto = Math.Max(rto, path.SrttMs + (4 * path.RttVarMs));
                any = true;
            }
        }

        if (!any)
        {
            rto = 5 * _options.MinRto.TotalMilliseconds;
        }

        if (_hasAckRtt)
        {
            rto = Math.Max(rto, _ackSrttMs + (4 * _ackRttVarMs));
        }

        return Math.Clamp(rto, _options.MinRto.TotalMilliseconds, _options.MaxRto.TotalMilliseconds);
    }
}
