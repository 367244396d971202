using System.Diagnostics.Metrics;
using Relay.Transport.Multipath;
using Relay.Transport.Sockets;
using Relay.Transport.Tests.Support;

namespace Relay.Transport.Tests.Multipath;

public class ChannelMeterTests
{
    [Fact]
    public async Task MeterRelayTransport_PublishesPacketsDropsAndShards()
    {
        var link = new InMemoryLink(3);
        var name = "meter-test-" + Guid.NewGuid().ToString("N");
        var options = new MultipathChannelOptions { ChannelName = name };
        await using var pair = new ChannelPair(options, new IDatagramSocket[] { link.A }, new IDatagramSocket[] { link.B });
        await pair.TransferAndVerifyAsync(200, 10, 1000, TimeSpan.FromSeconds(20));
        link.B.Inject(new byte[3]); // one truncated datagram at the server

        var values = new Dictionary<string, double>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == "Relay.Transport" && instrument.Meter.Tags?.Any(t => Equals(t.Value, name)) == true)
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        void Record(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            var key = instrument.Name + string.Concat(tags.ToArray().Select(t => $"|{t.Key}={t.Value}"));
            lock (values)
            {
                values[key] = values.GetValueOrDefault(key) + value;
            }
        }

        listener.SetMeasurementEventCallback<long>((i, v, t, _) => Record(i, v, t));
        listener.SetMeasurementEventCallback<int>((i, v, t, _) => Record(i, v, t));
        listener.SetMeasurementEventCallback<double>((i, v, t, _) => Record(i, v, t));
        listener.Start();

        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(5);
        while (DateTime.UtcNow < deadline)
        {
            lock (values)
            {
                values.Clear();
            }

            listener.RecordObservableInstruments();
            if (values.GetValueOrDefault("relay.transport.drops|reason=Truncated") >= 1)
            {
                break;
            }

            await Task.Delay(20, TestContext.Current.CancellationToken);
        }

        Assert.True(values["relay.transport.packets|path=0|direction=sent"] > 0);
        Assert.True(values["relay.transport.packets|path=0|direction=received"] > 0);
        Assert.True(values["relay.transport.frames|direction=sent"] >= 200);
        Assert.True(values["relay.transport.frames|direction=received"] >= 200);
        Assert.Equal(1, values["relay.transport.drops|reason=Truncated"]);
        Assert.True(values["relay.transport.block.shards|kind=data"] >= 1);
        Assert.Contains("relay.transport.path.rtt|path=0", values.Keys);
    }
}
