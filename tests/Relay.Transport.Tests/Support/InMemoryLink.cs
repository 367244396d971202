using System.Threading.Channels;
using Relay.Transport.Sockets;

namespace Relay.Transport.Tests.Support;

/// <summary>Impairments of one direction of an in-memory link. Mutable while the link runs.</summary>
public sealed class LinkImpairment
{
    public double Loss { get; set; }

    public double Duplicate { get; set; }

    /// <summary>Probability that a datagram is held back by an extra 1-4 ms (so later ones overtake it).</summary>
    public double Reorder { get; set; }

    public TimeSpan Delay { get; set; }

    public bool Dead { get; set; }
}

/// <summary>
/// A seeded in-memory datagram link: two ends, each direction with its own impairments. Loss,
/// duplication and reordering decisions come from a seeded <see cref="Random"/> (timing is real).
/// </summary>
public sealed class InMemoryLink
{
    private readonly Random _random;
    private readonly object _gate = new();

    public InMemoryLink(int seed)
    {
        _random = new Random(seed);
        A = new LinkEnd(this, AtoB);
        B = new LinkEnd(this, BtoA);
        A.Peer = B;
        B.Peer = A;
    }

    public LinkImpairment AtoB { get; } = new();

    public LinkImpairment BtoA { get; } = new();

    public LinkEnd A { get; }

    public LinkEnd B { get; }

    /// <summary>Every datagram A sent, before impairment (for replay and forgery tests).</summary>
    public List<byte[]> TapAtoB { get; } = [];

    public bool TapEnabled { get; set; }

    private double Next()
    {
        lock (_gate)
        {
            return _random.NextDouble();
        }
    }

    public sealed class LinkEnd : IDatagramSocket
    {
        private readonly InMemoryLink _link;
        private readonly LinkImpairment _outbound;
        private readonly Channel<byte[]> _inbox = Channel.CreateBounded<byte[]>(new BoundedChannelOptions(8192) { FullMode = BoundedChannelFullMode.DropWrite });

        internal LinkEnd(InMemoryLink link, LinkImpairment outbound)
        {
            _link = link;
            _outbound = outbound;
        }

        internal LinkEnd Peer { get; set; } = null!;

        public bool ReceivesCoalesced => false;

        public int LastSegmentBytes => 0;

        private long _sent;

        public long Sent => Interlocked.Read(ref _sent);

        public bool Send(ReadOnlySpan<byte> datagram)
        {
            Interlocked.Increment(ref _sent);
            var copy = datagram.ToArray();
            if (_link.TapEnabled && ReferenceEquals(this, _link.A))
            {
                lock (_link.TapAtoB)
                {
                    _link.TapAtoB.Add(copy);
                }
            }

            var o = _outbound;
            if (o.Dead || _link.Next() < o.Loss)
            {
                return true;
            }

            Deliver(copy, o);
            if (_link.Next() < o.Duplicate)
            {
                Deliver(copy, o);
            }

            return true;
        }

        private void Deliver(byte[] datagram, LinkImpairment o)
        {
            var delay = o.Delay;
            if (_link.Next() < o.Reorder)
            {
                delay += TimeSpan.FromMilliseconds(1 + (3 * _link.Next()));
            }

            if (delay <= TimeSpan.Zero)
            {
                Peer.Inject(datagram);
            }
            else
            {
                _ = Task.Delay(delay).ContinueWith(static (_, s) => ((Tuple<LinkEnd, byte[]>)s!).Item1.Inject(((Tuple<LinkEnd, byte[]>)s!).Item2), Tuple.Create(Peer, datagram), TaskScheduler.Default);
            }
        }

        public bool SendSegments(ReadOnlySpan<byte> datagrams, int segmentBytes, int count)
        {
            for (var i = 0; i < count; i++)
            {
                Send(datagrams.Slice(i * segmentBytes, Math.Min(segmentBytes, datagrams.Length - (i * segmentBytes))));
            }

            return true;
        }

        /// <summary>Puts raw bytes into this end's inbox, as if they had arrived from the network.</summary>
        public void Inject(byte[] datagram) => _inbox.Writer.TryWrite(datagram);

        public async ValueTask<int> ReceiveAsync(Memory<byte> buffer, CancellationToken cancellationToken)
        {
            try
            {
                var datagram = await _inbox.Reader.ReadAsync(cancellationToken);
                var n = Math.Min(datagram.Length, buffer.Length);
                datagram.AsSpan(0, n).CopyTo(buffer.Span);
                return n;
            }
            catch (ChannelClosedException)
            {
                return 0;
            }
        }

        public void Dispose() => _inbox.Writer.TryComplete();
    }
}
