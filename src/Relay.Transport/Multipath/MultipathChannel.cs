using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Relay.Transport.Crypto;
using Relay.Transport.Fec;
using Relay.Transport.Framing;
using Relay.Transport.Paths;
using Relay.Transport.Sockets;

namespace Relay.Transport.Multipath;

/// <summary>
/// Ordered, reliable, authenticated delivery of frames between two peers over N datagram paths
/// (docs/transport.md). Frames are batched into blocks, LZ4-compressed when that helps, protected
/// by k + m Reed-Solomon shards spread over the live paths, acknowledged cumulatively and
/// selectively, and repaired on NACK or retransmit timeout.
/// </summary>
/// <remarks>
/// The channel owns the sockets it is given. <see cref="SendAsync"/> and <see cref="ReceiveAsync"/>
/// may each be called by one caller at a time (one sender, one reader); they may run concurrently.
/// Memory is bounded by the send and receive windows.
/// </remarks>
public sealed partial class MultipathChannel : IAsyncDisposable
{
    private readonly MultipathChannelOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly bool _isClient;
    private readonly TransportKeys _keys;
    private readonly PathState[] _paths;
    private readonly PacketProtector _sealer;
    private readonly ChannelCounters _counters = new();
    private readonly CancellationTokenSource _shutdown = new();
    private readonly Task[] _receiveLoops;
    private readonly Task _timerLoop;
    private readonly int _shardBytes;
    private readonly ChannelMeter _meter;
    private readonly BlockBufferPool _buffers;
    private int _disposed;
    private volatile bool _closed;

    private MultipathChannel(
        MultipathChannelOptions options,
        TransportKeys keys,
        bool isClient,
        IReadOnlyList<IDatagramSocket> sockets,
        ILogger? logger,
        TimeProvider? timeProvider)
    {
        _options = options;
        _keys = keys;
        _isClient = isClient;
        _time = timeProvider ?? TimeProvider.System;
        _logger = logger ?? NullLogger.Instance;
        _shardBytes = options.ShardBytes;
        _paths = new PathState[sockets.Count];
        for (var i = 0; i < _paths.Length; i++)
        {
            _paths[i] = new PathState(i, sockets[i]);
            if (sockets[i] is UdpDatagramSocket udp)
            {
                if (options.UseGso)
                {
                    udp.TryEnableGso(options.MaxDatagramBytes);
                }

                if (options.UseGro)
                {
                    udp.TryEnableGro();
                }
            }
        }

        _sealer = new PacketProtector(options.Aead, keys.Send(isClient));
        _buffers = new BlockBufferPool(
            (options.MaxDataShards + options.MaxParityShards) * options.ShardBytes,
            options.SendWindowBlocks + (2 * options.ReceiveWindowBlocks) + 8);

        // Send side.
        _batch = new byte[options.MaxBatchBytes];
        _compressed = new byte[options.MaxBatchBytes];
        _sent = new SentBlock[options.SendWindowBlocks];
        for (var i = 0; i < _sent.Length; i++)
        {
            _sent[i] = new SentBlock();
        }

        _encoders = new ReedSolomon?[options.MaxDataShards + 1, 256];
        _plain = new byte[options.MaxDatagramBytes];
        _segments = new byte[Math.Max(options.MaxDatagramBytes, MaxSegmentsPerSend * options.MaxDatagramBytes)];
        _peerWindowLimit = options.ReceiveWindowBlocks;

        // Receive side.
        _received = new ReceivedBlock[options.ReceiveWindowBlocks];
        for (var i = 0; i < _received.Length; i++)
        {
            _received[i] = new ReceivedBlock();
        }

        _decoders = new ReedSolomon?[options.MaxDataShards + 1, 256];

        _receiveLoops = new Task[_paths.Length];
        for (var i = 0; i < _paths.Length; i++)
        {
            var path = _paths[i];
            _receiveLoops[i] = Task.Run(() => ReceiveLoopAsync(path));
        }

        _timerLoop = Task.Run(TimerLoopAsync);
        _meter = new ChannelMeter(this, options.ChannelName, options.MeterFactory);
    }

    /// <summary>
    /// Starts a channel over <paramref name="sockets"/> (path i of one peer talks to path i of the other).
    /// <paramref name="isClient"/> selects the key direction: the peer that opened the control connection is the client.
    /// </summary>
    public static MultipathChannel Start(
        MultipathChannelOptions options,
        TransportKeys keys,
        bool isClient,
        IReadOnlyList<IDatagramSocket> sockets,
        ILogger? logger = null,
        TimeProvider? timeProvider = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(keys);
        ArgumentNullException.ThrowIfNull(sockets);
        options.Validate();
        if (sockets.Count is < 1 or > WireFormat.MaxPaths)
        {
            throw new ArgumentOutOfRangeException(nameof(sockets), $"A channel has 1 to {WireFormat.MaxPaths} paths.");
        }

        return new MultipathChannel(options, keys, isClient, sockets, logger, timeProvider);
    }

    public int PathCount => _paths.Length;

    public bool IsClosed => _closed;

    /// <summary>A consistent-enough snapshot of the counters (reads are not atomic across fields).</summary>
    public ChannelMetrics GetMetrics()
    {
        var drops = new Dictionary<DropReason, long>();
        foreach (var reason in Enum.GetValues<DropReason>())
        {
            drops[reason] = Interlocked.Read(ref _counters.Drops[(int)reason]);
        }

        var paths = new PathMetrics[_paths.Length];
        lock (_sendLock)
        {
            for (var i = 0; i < paths.Length; i++)
            {
                var p = _paths[i];
                paths[i] = new PathMetrics(
                    i,
                    p.Alive,
                    p.PacketsSent,
                    p.BytesSent,
                    Interlocked.Read(ref p.PacketsReceived),
                    Interlocked.Read(ref p.BytesReceived),
                    p.SrttMs,
                    p.JitterMs,
                    p.LastLoss,
                    p.ForecastLoss,
                    p.Share);
            }
        }

        return new ChannelMetrics(
            Interlocked.Read(ref _counters.FramesSent),
            Interlocked.Read(ref _counters.FramesReceived),
            Interlocked.Read(ref _counters.BlocksSent),
            Interlocked.Read(ref _counters.BlocksDecoded),
            Interlocked.Read(ref _counters.FecRecoveredShards),
            Interlocked.Read(ref _counters.RetransmittedShards),
            Interlocked.Read(ref _counters.BlocksRepaired),
            Interlocked.Read(ref _counters.DuplicateShards),
            drops,
            Volatile.Read(ref _counters.CurrentK),
            Volatile.Read(ref _counters.CurrentM),
            paths);
    }

    /// <summary>Sends a close to the peer, stops the loops, disposes the sockets and returns pooled buffers.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        if (!_closed)
        {
            lock (_sendLock)
            {
                Span<byte> reason = [0];
                foreach (var path in _paths)
                {
                    SendControlLocked(path, PacketType.Close, reason);
                }
            }
        }

        MarkClosed();
        await _shutdown.CancelAsync().ConfigureAwait(false);
        foreach (var path in _paths)
        {
            path.Socket.Dispose();
        }

        try
        {
            await Task.WhenAll(_receiveLoops).WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
            await _timerLoop.WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            // A loop stuck in a socket call: the sockets are closed, it ends on its own.
        }

        lock (_sendLock)
        {
            foreach (var block in _sent)
            {
                ReleaseSent(block);
            }

            _compressor.Dispose();
        }

        lock (_recvLock)
        {
            foreach (var block in _received)
            {
                ReleaseReceived(block);
            }
        }

        _meter.Dispose();
        _sealer.Dispose();
        _shutdown.Dispose();
    }

    private void MarkClosed()
    {
        _closed = true;
        _windowSignal.Set();
        _dataSignal.Set();
    }

    private long NowTicks => _time.GetTimestamp();

    private double ElapsedMs(long fromTicks, long toTicks) => (toTicks - fromTicks) * 1000.0 / _time.TimestampFrequency;

    private long MsToTicks(double ms) => (long)(ms * _time.TimestampFrequency / 1000.0);

    /// <summary>The full block id nearest <paramref name="reference"/> whose low 32 bits are <paramref name="wire"/>.</summary>
    private static long ExpandId(uint wire, long reference) => reference + (int)(wire - (uint)reference);

    private byte[] Rent(int length) => _buffers.Rent(length);

    private void Return(ref byte[]? buffer)
    {
        if (buffer is not null)
        {
            _buffers.Return(buffer);
            buffer = null;
        }
    }
}
