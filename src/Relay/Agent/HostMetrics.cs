using System.Diagnostics;
using System.Globalization;
using Relay.Diagnostics;

namespace Relay.Agent;

/// <summary>
/// The host's CPU busy share and memory in use, from /proc/stat and /proc/meminfo, for the agent's
/// heartbeats (what the relay's stability score reads). Where /proc is not readable it falls back
/// to this process's own CPU time and working set, and says so in <see cref="Source"/>.
/// </summary>
internal sealed class HostMetrics : IDisposable
{
    private readonly Process _process = Process.GetCurrentProcess();
    private long _lastBusy;
    private long _lastTotal;
    private TimeSpan _lastProcessCpu;
    private long _lastWall = Stopwatch.GetTimestamp();

    public HostMetrics()
    {
        if (TryReadCpu(out var busy, out var total))
        {
            (_lastBusy, _lastTotal) = (busy, total);
            Source = "host";
        }
        else
        {
            _lastProcessCpu = _process.TotalProcessorTime;
            Source = "process";
        }
    }

    /// <summary>"host" (/proc) or "process" (fallback).</summary>
    public string Source { get; }

    /// <summary>CPU busy share since the last call, 0-100.</summary>
    public double CpuPercent()
    {
        if (Source == "host" && TryReadCpu(out var busy, out var total))
        {
            var dt = total - _lastTotal;
            var percent = dt > 0 ? Math.Clamp(100.0 * (busy - _lastBusy) / dt, 0, 100) : 0;
            (_lastBusy, _lastTotal) = (busy, total);
            return percent;
        }

        _process.Refresh();
        var cpu = _process.TotalProcessorTime;
        var wall = Stopwatch.GetElapsedTime(_lastWall);
        _lastWall = Stopwatch.GetTimestamp();
        var share = wall > TimeSpan.Zero ? Math.Clamp((cpu - _lastProcessCpu) / wall / Environment.ProcessorCount * 100, 0, 100) : 0;
        _lastProcessCpu = cpu;
        return share;
    }

    /// <summary>Memory in use and the total: MemTotal - MemAvailable and MemTotal, or the working set and 0.</summary>
    public static (long Used, long Total) Memory()
    {
        Span<byte> buffer = stackalloc byte[4096];
        var meminfo = buffer[..ProcFiles.Read("/proc/meminfo", buffer)];
        return ProcFiles.TryField(meminfo, "MemTotal:"u8, out var total) && ProcFiles.TryField(meminfo, "MemAvailable:"u8, out var available)
            ? ((total - available) * 1024, total * 1024)
            : (Environment.WorkingSet, 0);
    }

    private static bool TryReadCpu(out long busy, out long total)
    {
        busy = total = 0;
        try
        {
            using var reader = new StreamReader("/proc/stat");
            var line = reader.ReadLine();
            if (line is null || !line.StartsWith("cpu ", StringComparison.Ordinal))
            {
                return false;
            }

            // user nice system idle iowait irq softirq steal ...: idle and iowait are not busy.
            var fields = line[4..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
            for (var i = 0; i < fields.Length && i < 8; i++)
            {
                var value = long.Parse(fields[i], NumberStyles.None, CultureInfo.InvariantCulture);
                total += value;
                if (i is not (3 or 4))
                {
                    busy += value;
                }
            }

            return total > 0;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or FormatException or OverflowException)
        {
            return false;
        }
    }

    public void Dispose() => _process.Dispose();
}
