using System.Diagnostics.Metrics;

namespace Relay.Transport.Multipath;

/// <summary>
/// Publishes a channel's counters as observable instruments on a meter named "Relay.Transport",
/// tagged with the channel's name; values are read from <see cref="MultipathChannel.GetMetrics"/>
/// only when a listener collects, so nothing is spent per packet.
/// </summary>
internal sealed class ChannelMeter : IDisposable
{
    public const string MeterName = "Relay.Transport";

    private readonly Meter _meter;
    private readonly bool _ownsMeter;

    public ChannelMeter(MultipathChannel channel, string channelName, IMeterFactory? factory)
    {
        var options = new MeterOptions(MeterName) { Tags = [new("relay.transport.channel", channelName)] };
        _ownsMeter = factory is null;
        _meter = factory?.Create(options) ?? new Meter(options);

        _meter.CreateObservableCounter("relay.transport.packets", () => PerPath<long>(channel, (p, list) =>
        {
            list.Add(new(p.PacketsSent, Tag("path", p.Path), Tag("direction", "sent")));
            list.Add(new(p.PacketsReceived, Tag("path", p.Path), Tag("direction", "received")));
        }), "{packet}", "Datagrams sent and accepted (after authentication), per path.");
        _meter.CreateObservableCounter("relay.transport.bytes", () => PerPath<long>(channel, (p, list) =>
        {
            list.Add(new(p.BytesSent, Tag("path", p.Path), Tag("direction", "sent")));
            list.Add(new(p.BytesReceived, Tag("path", p.Path), Tag("direction", "received")));
        }), "By", "Datagram bytes sent and accepted, per path.");
        _meter.CreateObservableGauge("relay.transport.path.rtt", () => PerPath<double>(channel, (p, list) =>
            list.Add(new(p.SrttMs, Tag("path", p.Path)))), "ms", "Smoothed round-trip time per path.");
        _meter.CreateObservableGauge("relay.transport.path.loss", () => PerPath<double>(channel, (p, list) =>
            list.Add(new(p.LossForecast, Tag("path", p.Path)))), null, "Forecast loss rate per path (0..1).");
        _meter.CreateObservableGauge("relay.transport.path.alive", () => PerPath<int>(channel, (p, list) =>
            list.Add(new(p.Alive ? 1 : 0, Tag("path", p.Path)))), null, "1 while the path carries shards, 0 while excluded.");
        _meter.CreateObservableCounter("relay.transport.frames", () =>
        {
            var m = channel.GetMetrics();
            return new Measurement<long>[] { new(m.FramesSent, Tag("direction", "sent")), new(m.FramesReceived, Tag("direction", "received")) };
        }, "{frame}", "Frames queued by the sender and delivered to the reader.");
        _meter.CreateObservableCounter("relay.transport.fec.recovered_shards", () => channel.GetMetrics().FecRecoveredShards, "{shard}", "Data shards rebuilt by Reed-Solomon decoding.");
        _meter.CreateObservableCounter("relay.transport.retransmitted_shards", () => channel.GetMetrics().RetransmittedShards, "{shard}", "Shards resent after a NACK or a retransmit timeout.");
        _meter.CreateObservableCounter("relay.transport.drops", () =>
        {
            var m = channel.GetMetrics();
            return m.Drops.Select(d => new Measurement<long>(d.Value, Tag("reason", d.Key.ToString()))).ToArray();
        }, "{packet}", "Datagrams dropped before decoding, by reason.");
        _meter.CreateObservableGauge("relay.transport.block.shards", () =>
        {
            var m = channel.GetMetrics();
            return new Measurement<int>[] { new(m.CurrentDataShards, Tag("kind", "data")), new(m.CurrentParityShards, Tag("kind", "parity")) };
        }, "{shard}", "k and m of the last block sent.");
    }

    private static KeyValuePair<string, object?> Tag(string name, object value) => new(name, value);

    private static List<Measurement<T>> PerPath<T>(MultipathChannel channel, Action<PathMetrics, List<Measurement<T>>> add)
        where T : struct
    {
        var list = new List<Measurement<T>>();
        foreach (var path in channel.GetMetrics().Paths)
        {
            add(path, list);
        }

        return list;
    }

    public void Dispose()
    {
        if (_ownsMeter)
        {
            _meter.Dispose();
        }
    }
}
