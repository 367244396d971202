using System.Buffers.Binary;
using System.Net.Sockets;
using Relay.Transport.Compression;
using Relay.Transport.Crypto;
using Relay.Transport.Fec;
using Relay.Transport.Framing;
using Relay.Transport.Paths;

namespace Relay.Transport.Multipath;

public sealed partial class MultipathChannel
{
    private const int AckPayloadBytes = 16;

    private readonly object _recvLock = new();
    private readonly AsyncSignal _dataSignal = new();
    private readonly ReceivedBlock[] _received;
    private readonly ReedSolomon?[,] _decoders;
    private long _deliverBase;      // next block the application reads
    private long _cumulative;       // first block not yet decoded
    private long _highestSeen = -1; // highest block id a shard arrived for
    private long _lastAckTicks;
    private long _lastAdvertisedWindow;
    private bool _ackPending;

    /// <summary>
    /// Copies the next frame into <paramref name="destination"/> (which must hold MaxFrameBytes) and
    /// returns its length, waiting when none is ready. Returns 0 once the channel is closed and every
    /// delivered frame has been read.
    /// </summary>
    public ValueTask<int> ReceiveAsync(Memory<byte> destination, CancellationToken cancellationToken = default)
    {
        lock (_recvLock)
        {
            if (TryReadFrameLocked(destination.Span, out var length))
            {
                return new ValueTask<int>(length);
            }

            if (_closed)
            {
                return new ValueTask<int>(0);
            }
        }

        return ReceiveSlowAsync(destination, cancellationToken);
    }

    private async ValueTask<int> ReceiveSlowAsync(Memory<byte> destination, CancellationToken cancellationToken)
    {
        while (true)
        {
            Task wait;
            lock (_recvLock)
            {
                wait = _dataSignal.WaitAsync();
                if (TryReadFrameLocked(destination.Span, out var length))
                {
                    return length;
                }

                if (_closed)
                {
                    return 0;
                }
            }

            await wait.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    private bool TryReadFrameLocked(Span<byte> destination, out int length)
    {
        length = 0;
        var block = _received[(int)(_deliverBase % _received.Length)];
        if (block.Id != _deliverBase || !block.Decoded)
        {
            return false;
        }

        var raw = block.RawOwner.AsSpan(block.RawOffset, block.RawLength);
        length = BinaryPrimitives.ReadUInt16BigEndian(raw[block.ReadOffset..]);
        if (destination.Length < length)
        {
            throw new ArgumentException($"The destination holds {destination.Length} bytes; the next frame has {length}.", nameof(destination));
        }

        raw.Slice(block.ReadOffset + 2, length).CopyTo(destination);
        block.ReadOffset += 2 + length;
        _counters.FramesReceived++;
        if (block.ReadOffset >= block.RawLength)
        {
            ReleaseReceived(block);
            _deliverBase++;
            WakeTimerLocked();
        }

        return true;
    }

    private void ReleaseReceived(ReceivedBlock block)
    {
        if (!ReferenceEquals(block.RawOwner, block.Buffer))
        {
            Return(ref block.RawOwner);
        }

        block.RawOwner = null;
        Return(ref block.Buffer);
        block.Id = -1;
        block.Decoded = false;
        block.Count = 0;
        block.K = 0;
    }

    private async Task ReceiveLoopAsync(PathState socketPath)
    {
        var coalesced = socketPath.Socket.ReceivesCoalesced;
        var buffer = GC.AllocateUninitializedArray<byte>(coalesced ? 65536 : _options.MaxDatagramBytes + 1, pinned: true);
        var plain = new byte[_options.MaxDatagramBytes];
        using var opener = new PacketProtector(_options.Aead, _keys.Receive(_isClient));
        var token = _shutdown.Token;
        try
        {
            while (!token.IsCancellationRequested)
            {
                int received;
                try
                {
                    received = await socketPath.Socket.ReceiveAsync(buffer, token).ConfigureAwait(false);
                }
                catch (SocketException) when (!token.IsCancellationRequested)
                {
                    // ICMP port unreachable and friends surface as receive errors on UDP: keep going.
                    continue;
                }

                if (received <= 0)
                {
                    if (received == 0 && socketPath.Socket.ZeroIsEmptyDatagram && !token.IsCancellationRequested)
                    {
                        // An empty datagram (anyone can send one), not the end of the socket.
                        _counters.Drop(DropReason.Truncated);
                        continue;
                    }

                    break;
                }

                var segment = coalesced ? socketPath.Socket.LastSegmentBytes : 0;
                if (segment > 0 && received > segment)
                {
                    // GRO joined datagrams of one size (the last may be shorter), the size from its cmsg.
                    for (var offset = 0; offset < received; offset += segment)
                    {
                        ProcessDatagram(buffer.AsSpan(offset, Math.Min(segment, received - offset)), opener, plain);
                    }
                }
                else
                {
                    ProcessDatagram(buffer.AsSpan(0, received), opener, plain);
                }
            }
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
            // Shutting down.
        }
        catch (ObjectDisposedException) when (token.IsCancellationRequested)
        {
            // The socket was closed by DisposeAsync.
        }
        catch (Exception ex)
        {
            Log.ReceiveLoopFailed(_logger, socketPath.Index, ex);
        }
    }

    /// <summary>
    /// The receive pipeline of docs/transport.md section 2: header checks, replay pre-check, AEAD
    /// open, replay commit, then dispatch. Never throws for any input; every drop is counted.
    /// </summary>
    internal void ProcessDatagram(ReadOnlySpan<byte> datagram, PacketProtector opener, Span<byte> plain)
    {
        if (!WireFormat.TryParseHeader(datagram, _options.MaxDatagramBytes, out var header, out var reason))
        {
            _counters.Drop(reason);
            return;
        }

        if (header.Path >= _paths.Length)
        {
            _counters.Drop(DropReason.Malformed);
            return;
        }

        var path = _paths[header.Path];
        lock (path.ReceiveLock)
        {
            if (!path.Replay.Check(header.PacketNumber, out var tooOld))
            {
                _counters.Drop(tooOld ? DropReason.TooOld : DropReason.Replayed);
                return;
            }
        }

        if (!opener.TryOpen(datagram, header, plain))
        {
            _counters.Drop(DropReason.AuthFailed);
            return;
        }

        lock (path.ReceiveLock)
        {
            // Checked again: the same datagram may have been opened by another loop meanwhile.
            if (!path.Replay.Check(header.PacketNumber, out var tooOld))
            {
                _counters.Drop(tooOld ? DropReason.TooOld : DropReason.Replayed);
                return;
            }

            path.Replay.Commit(header.PacketNumber);
            path.PacketsReceived++;
            path.BytesReceived += datagram.Length;
        }

        var payload = plain[..(datagram.Length - WireFormat.OverheadBytes)];
        switch (header.Type)
        {
            case PacketType.Data:
                HandleData(payload);
                break;
            case PacketType.Ack:
                HandleAck(payload);
                break;
            case PacketType.Nack:
                HandleNack(payload);
                break;
            case PacketType.Probe:
                HandleProbe(path, payload);
                break;
            case PacketType.ProbeAck:
                HandleProbeAck(path, payload);
                break;
            case PacketType.Close:
                HandleClose(payload);
                break;
        }
    }

    private void HandleData(ReadOnlySpan<byte> payload)
    {
        if (payload.Length <= WireFormat.DataShardHeaderBytes)
        {
            _counters.Drop(DropReason.Malformed);
            return;
        }

        var wireId = BinaryPrimitives.ReadUInt32BigEndian(payload);
        int index = payload[4], k = payload[5], m = payload[6];
        var s = payload.Length - WireFormat.DataShardHeaderBytes;
        if (k < 1 || k > _options.MaxDataShards || k + m > 255 || index >= k + m || payload[7] != 0 || k * s < WireFormat.BlockHeaderBytes)
        {
            _counters.Drop(DropReason.Malformed);
            return;
        }

        var sendAck = false;
        lock (_recvLock)
        {
            var id = ExpandId(wireId, _deliverBase);
            if (id < _deliverBase)
            {
                _counters.DuplicateShards++;
                sendAck = AckDueLocked();
            }
            else if (id >= _deliverBase + _received.Length)
            {
                _counters.Drop(DropReason.Window);
            }
            else
            {
                sendAck = AcceptShardLocked(id, index, k, m, s, payload[WireFormat.DataShardHeaderBytes..]);
            }

            WakeTimerLocked();
        }

        if (sendAck)
        {
            SendAck();
        }
    }

    private bool AcceptShardLocked(long id, int index, int k, int m, int s, ReadOnlySpan<byte> shard)
    {
        var block = _received[(int)(id % _received.Length)];
        if (block.Id != id || block.K == 0)
        {
            if (block.Id != id)
            {
                ReleaseReceived(block);
                block.LastNackTicks = 0;
            }

            block.Id = id;
            block.K = k;
            block.M = m;
            block.ShardBytes = s;
            block.Buffer = Rent((k + m) * s);
            Array.Clear(block.Present);
            block.Count = 0;
            block.Decoded = false;
        }
        else if (block.K != k || block.M != m || block.ShardBytes != s)
        {
            _counters.Drop(DropReason.Malformed);
            return false;
        }

        _highestSeen = Math.Max(_highestSeen, id);
        if (block.Decoded || block.Present[index])
        {
            _counters.DuplicateShards++;
            return AckDueLocked();
        }

        shard.CopyTo(block.Buffer.AsSpan(index * s, s));
        block.Present[index] = true;
        block.Count++;
        block.LastShardTicks = NowTicks;
        if (block.Count < k)
        {
            return false;
        }

        if (!TryDecodeLocked(block))
        {
            return false;
        }

        while (true)
        {
            var next = _received[(int)(_cumulative % _received.Length)];
            if (next.Id != _cumulative || !next.Decoded || _cumulative >= _deliverBase + _received.Length)
            {
                break;
            }

            _cumulative++;
        }

        _dataSignal.Set();
        _ackPending = true;
        return true;
    }

    private bool TryDecodeLocked(ReceivedBlock block)
    {
        int k = block.K, m = block.M, s = block.ShardBytes;
        var buffer = block.Buffer!;
        var recovered = 0;
        for (var i = 0; i < k; i++)
        {
            if (!block.Present[i])
            {
                recovered++;
            }
        }

        if (recovered > 0)
        {
            var decoder = _decoders[k, m] ??= new ReedSolomon(k, m);
            if (!decoder.TryDecode(buffer.AsSpan(0, (k + m) * s), block.Present.AsSpan(0, k + m), s))
            {
                return false;
            }

            _counters.FecRecoveredShards += recovered;
        }

        var content = buffer.AsSpan(0, k * s);
        var flags = content[0];
        var rawLength = (int)Math.Min(BinaryPrimitives.ReadUInt32BigEndian(content[1..]), int.MaxValue);
        var bodyLength = (int)Math.Min(BinaryPrimitives.ReadUInt32BigEndian(content[5..]), int.MaxValue);
        string? problem = null;
        if ((flags & ~1) != 0 || bodyLength > content.Length - WireFormat.BlockHeaderBytes || rawLength > _options.MaxBatchBytes || rawLength < 3)
        {
            problem = "bad block header";
        }
        else if ((flags & 1) == 0 && rawLength != bodyLength)
        {
            problem = "raw and body lengths differ";
        }

        if (problem is null)
        {
            if ((flags & 1) != 0)
            {
                var raw = Rent(rawLength);
                if (!BatchCompressor.TryDecompress(content.Slice(WireFormat.BlockHeaderBytes, bodyLength), raw, rawLength))
                {
                    _buffers.Return(raw);
                    problem = "LZ4 body does not decode";
                }
                else
                {
                    block.RawOwner = raw;
                    block.RawOffset = 0;
                }
            }
            else
            {
                block.RawOwner = buffer;
                block.RawOffset = WireFormat.BlockHeaderBytes;
            }
        }

        if (problem is null)
        {
            block.RawLength = rawLength;
            problem = ValidateFrames(block.RawOwner.AsSpan(block.RawOffset, rawLength), _options.MaxFrameBytes, out var frames);
            if (problem is null)
            {
                block.ReadOffset = 0;
                block.Decoded = true;
                _counters.BlocksDecoded++;
                return true;
            }
        }

        // An authenticated peer sent something this version cannot read: nothing later can be
        // delivered in order, so the channel closes.
        _counters.Drop(DropReason.Malformed);
        Log.ProtocolError(_logger, block.Id, problem);
        MarkClosed();
        return false;
    }

    private static string? ValidateFrames(ReadOnlySpan<byte> raw, int maxFrameBytes, out int frames)
    {
        frames = 0;
        var offset = 0;
        while (offset < raw.Length)
        {
            if (raw.Length - offset < 2)
            {
                return "truncated frame length";
            }

            int length = BinaryPrimitives.ReadUInt16BigEndian(raw[offset..]);
            if (length < 1 || length > maxFrameBytes || length > raw.Length - offset - 2)
            {
                return "bad frame length";
            }

            offset += 2 + length;
            frames++;
        }

        return null;
    }

    private bool AckDueLocked() => NowTicks - _lastAckTicks >= MsToTicks(1);

    /// <summary>Builds the ack under the receive lock, sends it under the send lock (never both at once).</summary>
    private void SendAck()
    {
        Span<byte> payload = stackalloc byte[AckPayloadBytes];
        lock (_recvLock)
        {
            BuildAckLocked(payload);
        }

        lock (_sendLock)
        {
            SendControlLocked(BestPathLocked(), PacketType.Ack, payload);
        }
    }

    private void BuildAckLocked(Span<byte> payload)
    {
        ulong selective = 0;
        for (var i = 0; i < 64; i++)
        {
            var id = _cumulative + 1 + i;
            if (id > _highestSeen)
            {
                break;
            }

            var block = _received[(int)(id % _received.Length)];
            if (block.Id == id && block.Decoded)
            {
                selective |= 1UL << i;
            }
        }

        var window = _deliverBase + _received.Length;
        BinaryPrimitives.WriteUInt32BigEndian(payload, (uint)_cumulative);
        BinaryPrimitives.WriteUInt64BigEndian(payload[4..], selective);
        BinaryPrimitives.WriteUInt32BigEndian(payload[12..], (uint)window);
        _lastAckTicks = NowTicks;
        _lastAdvertisedWindow = window;
        _ackPending = false;
    }

    private void HandleProbe(PathState path, ReadOnlySpan<byte> payload)
    {
        if (payload.Length != 12)
        {
            _counters.Drop(DropReason.Malformed);
            return;
        }

        Span<byte> answer = stackalloc byte[28];
        payload.CopyTo(answer);
        lock (path.ReceiveLock)
        {
            BinaryPrimitives.WriteUInt64BigEndian(answer[12..], (ulong)path.Replay.Accepted);
            BinaryPrimitives.WriteUInt64BigEndian(answer[20..], path.Replay.Highest);
        }

        lock (_sendLock)
        {
            SendControlLocked(path, PacketType.ProbeAck, answer);
        }
    }

    private void HandleProbeAck(PathState path, ReadOnlySpan<byte> payload)
    {
        if (payload.Length != 28)
        {
            _counters.Drop(DropReason.Malformed);
            return;
        }

        var sentTicks = BinaryPrimitives.ReadInt64BigEndian(payload[4..]);
        var peerReceived = BinaryPrimitives.ReadUInt64BigEndian(payload[12..]);
        var peerHighest = BinaryPrimitives.ReadUInt64BigEndian(payload[20..]);
        var now = NowTicks;
        if (sentTicks > now || sentTicks < now - MsToTicks(60_000))
        {
            _counters.Drop(DropReason.Malformed);
            return;
        }

        lock (_sendLock)
        {
            path.OnRttSample(ElapsedMs(sentTicks, now));
            path.LastProbeAckTicks = now;
            path.ProbesSinceAck = 0;
            if (!path.HasPeerCounts)
            {
                path.LastPeerReceived = peerReceived;
                path.LastPeerHighest = peerHighest;
                path.HasPeerCounts = true;
            }
            else if (peerHighest >= path.LastPeerHighest + 16 && peerReceived >= path.LastPeerReceived)
            {
                var sent = peerHighest - path.LastPeerHighest;
                var got = peerReceived - path.LastPeerReceived;
                path.LastLoss = Math.Clamp(1 - ((double)got / sent), 0, 1);
                path.LossForecast.Add(path.LastLoss);
                path.LastPeerReceived = peerReceived;
                path.LastPeerHighest = peerHighest;
            }

            if (!path.Alive && ++path.ConsecutiveAcks >= 2)
            {
                path.Alive = true;
                path.WrrCurrent = 0;
                Log.PathReadmitted(_logger, path.Index, path.SrttMs);
            }

            UpdateSharesLocked();
        }
    }

    private void UpdateSharesLocked()
    {
        foreach (var path in _paths)
        {
            // Goodput per unit of delay: a lossy or slow path gets proportionally fewer shards.
            path.Share = Math.Max(0.01, (1 - path.ForecastLoss) / Math.Max(path.ForecastRttMs, 0.05));
        }

        var max = _paths.Max(p => p.Share);
        foreach (var path in _paths)
        {
            path.Share /= max;
        }
    }

    private void HandleClose(ReadOnlySpan<byte> payload)
    {
        if (payload.Length != 1)
        {
            _counters.Drop(DropReason.Malformed);
            return;
        }

        Log.PeerClosed(_logger, payload[0]);
        MarkClosed();
    }
}
