using System.Globalization;
using System.Text;
using System.Text.Json;
using HdrHistogram;

namespace Relay.LoadGen;

/// <summary>What a run measured; printed once as a JSON line and once as a human line.</summary>
internal sealed class RunResult
{
    public required string Mode { get; init; }

    public required string Target { get; init; }

    public int Sessions { get; init; }

    public int Size { get; init; }

    public int Depth { get; init; } = 1;

    /// <summary>Seconds over which ops and bytes were counted (after warm-up).</summary>
    public double ElapsedSeconds { get; set; }

    public long Ops { get; set; }

    public long BytesSent { get; set; }

    public long BytesReceived { get; set; }

    /// <summary>Throughput basis for Gbit/s: received bytes, or sent bytes for stream 'up'.</summary>
    public long PayloadBytes { get; set; }

    public long Errors { get; set; }

    /// <summary>Bytes this process allocated during the measured window (all threads).</summary>
    public long? AllocatedBytes { get; set; }

    public long ConnectFailures { get; set; }

    /// <summary>Latencies in nanoseconds; null when the mode measures none.</summary>
    public HistogramBase? Latency { get; set; }

    // idle mode
    public long? Opened { get; set; }

    public long? OpenAtEnd { get; set; }

    public long? ClosedByPeer { get; set; }

    public string? Note { get; set; }

    public double OpsPerSecond => ElapsedSeconds > 0 ? Ops / ElapsedSeconds : 0;

    public double GbitPerSecond => ElapsedSeconds > 0 ? PayloadBytes * 8.0 / ElapsedSeconds / 1e9 : 0;

    private double? PercentileMicros(double percentile) =>
        Latency is { TotalCount: > 0 } h ? h.GetValueAtPercentile(percentile) / 1000.0 : null;

    public string ToJson()
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream))
        {
            w.WriteStartObject();
            w.WriteString("mode", Mode);
            w.WriteString("target", Target);
            w.WriteNumber("sessions", Sessions);
            w.WriteNumber("size", Size);
            if (Mode == "rr")
            {
                w.WriteNumber("depth", Depth);
            }

            w.WriteNumber("elapsed_s", Math.Round(ElapsedSeconds, 3));
            w.WriteNumber("ops", Ops);
            w.WriteNumber("ops_per_s", Math.Round(OpsPerSecond, 1));
            w.WriteNumber("bytes_sent", BytesSent);
            w.WriteNumber("bytes_received", BytesReceived);
            w.WriteNumber("gbit_per_s", Math.Round(GbitPerSecond, 3));
            WriteMicros(w, "p50_us", PercentileMicros(50));
            WriteMicros(w, "p90_us", PercentileMicros(90));
            WriteMicros(w, "p99_us", PercentileMicros(99));
            WriteMicros(w, "p999_us", PercentileMicros(99.9));
            WriteMicros(w, "max_us", Latency is { TotalCount: > 0 } h ? h.GetMaxValue() / 1000.0 : null);
            WriteMicros(w, "mean_us", Latency is { TotalCount: > 0 } m ? m.GetMean() / 1000.0 : null);
            if (AllocatedBytes is not null)
            {
                w.WriteNumber("allocated_bytes", AllocatedBytes.Value);
            }

            w.WriteNumber("errors", Errors);
            w.WriteNumber("connect_failures", ConnectFailures);
            if (Opened is not null)
            {
                w.WriteNumber("opened", Opened.Value);
                w.WriteNumber("open_at_end", OpenAtEnd ?? 0);
                w.WriteNumber("closed_by_peer", ClosedByPeer ?? 0);
            }

            if (Note is not null)
            {
                w.WriteString("note", Note);
            }

            w.WriteEndObject();
        }

        return Encoding.UTF8.GetString(stream.ToArray());
    }

    public string ToHumanLine()
    {
        var c = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.Append(c, $"{Mode} {Target}: {Sessions} sessions, {ElapsedSeconds:F1} s");
        switch (Mode)
        {
            case "rr":
                sb.Append(c, $", {OpsPerSecond:F0} ops/s, p50 {Fmt(PercentileMicros(50))}, p99 {Fmt(PercentileMicros(99))}, p99.9 {Fmt(PercentileMicros(99.9))}");
                break;
            case "stream":
                sb.Append(c, $", {GbitPerSecond:F2} Gbit/s ({OpsPerSecond:F0} ops/s)");
                break;
            case "idle":
                sb.Append(c, $", opened {Opened}, open at end {OpenAtEnd}, closed by peer {ClosedByPeer}");
                break;
            default:
                break;
        }

        sb.Append(c, $", errors {Errors + ConnectFailures}");
        if (Note is not null)
        {
            sb.Append(c, $" ({Note})");
        }

        return sb.ToString();
    }

    private static string Fmt(double? micros) =>
        micros is null ? "-" : string.Create(CultureInfo.InvariantCulture, $"{micros.Value:F1} us");

    private static void WriteMicros(Utf8JsonWriter w, string name, double? micros)
    {
        if (micros is null)
        {
            w.WriteNull(name);
        }
        else
        {
            w.WriteNumber(name, Math.Round(micros.Value, 1));
        }
    }
}
