using System.Globalization;
using System.IO.Enumeration;
using Prometheus;

namespace Relay.Diagnostics;

/// <summary>
/// Process and runtime metrics under the names prometheus-net's <c>DotNetStats</c> exports
/// (<c>process_*</c>, <c>dotnet_*</c>), read at scrape time from <c>/proc/self</c> and the runtime.
/// <c>DotNetStats</c> refreshed a <see cref="System.Diagnostics.Process"/> on every scrape, which
/// turns each open descriptor into a string (10,000 of them at 5,000 sessions, about 1 MiB of
/// garbage per scrape) and each thread into an object. Here a scrape reads one small file and counts
/// the descriptors without naming them. Where /proc is not there, the gauges it feeds stay at 0.
/// </summary>
internal sealed class ProcessMetrics
{
    private const string ProcSelf = "/proc/self";

    private readonly Counter.Child[] _collections;
    private readonly Gauge _totalMemory;
    private readonly Gauge _virtualMemory;
    private readonly Gauge _workingSet;
    private readonly Gauge _privateMemory;
    private readonly Counter _cpu;
    private readonly Gauge _openHandles;
    private readonly Gauge _threads;
    private readonly Lock _gate = new();

    private ProcessMetrics(MetricFactory factory)
    {
        var collections = factory.CreateCounter("dotnet_collection_count_total", "GC collection count", "generation");
        _collections = new Counter.Child[GC.MaxGeneration + 1];
        for (var generation = 0; generation < _collections.Length; generation++)
        {
            _collections[generation] = collections.WithLabels(generation.ToString(CultureInfo.InvariantCulture));
        }

        var startTime = factory.CreateGauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds.");
        _cpu = factory.CreateCounter("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.");
        _virtualMemory = factory.CreateGauge("process_virtual_memory_bytes", "Virtual memory size in bytes.");
        _workingSet = factory.CreateGauge("process_working_set_bytes", "Process working set");
        _privateMemory = factory.CreateGauge("process_private_memory_bytes", "Process private memory size");
        _openHandles = factory.CreateGauge("process_open_handles", "Number of open handles");
        _threads = factory.CreateGauge("process_num_threads", "Total number of threads");
        _totalMemory = factory.CreateGauge("dotnet_total_memory_bytes", "Total known allocated memory");
        startTime.Set(StartTime().ToUnixTimeMilliseconds() / 1000.0);
    }

    public static void Register(CollectorRegistry registry)
    {
        var metrics = new ProcessMetrics(Metrics.WithCustomRegistry(registry));
        registry.AddBeforeCollectCallback(metrics.Update);
    }

    private void Update()
    {
        // Scrapes may overlap; the counters only move forwards, but keep their reads in one order.
        lock (_gate)
        {
            for (var generation = 0; generation < _collections.Length; generation++)
            {
                _collections[generation].IncTo(GC.CollectionCount(generation));
            }

            _totalMemory.Set(GC.GetTotalMemory(forceFullCollection: false));
            _cpu.IncTo(Environment.CpuUsage.TotalTime.TotalSeconds);

            Span<byte> status = stackalloc byte[4096];
            status = status[..ProcFiles.Read(ProcSelf + "/status", status)];
            _virtualMemory.Set(ProcFiles.Field(status, "VmSize:"u8) * 1024);
            _workingSet.Set(ProcFiles.Field(status, "VmRSS:"u8) * 1024);
            _privateMemory.Set(ProcFiles.Field(status, "VmData:"u8) * 1024);
            _threads.Set(ProcFiles.Field(status, "Threads:"u8));
            _openHandles.Set(CountDescriptors());
        }
    }

    private static int CountDescriptors()
    {
        try
        {
            var count = 0;
            var entries = new FileSystemEnumerable<byte>(ProcSelf + "/fd", static (ref FileSystemEntry _) => 0, new EnumerationOptions { AttributesToSkip = 0, IgnoreInaccessible = true });
            foreach (var _ in entries)
            {
                count++;
            }

            return count;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return 0;
        }
    }

    /// <summary>
    /// When the process started: field 22 of /proc/self/stat (clock ticks after boot; the kernel's
    /// USER_HZ is 100 on every Linux ABI) plus the boot time in /proc/stat. Now, where they cannot be read.
    /// </summary>
    private static DateTimeOffset StartTime()
    {
        Span<byte> buffer = stackalloc byte[4096];
        var stat = buffer[..ProcFiles.Read(ProcSelf + "/stat", buffer)];

        // The command name (field 2) is in parentheses and may hold spaces: count fields after its ')'.
        var close = stat.LastIndexOf((byte)')');
        if (close >= 0)
        {
            var fields = stat[(close + 2)..];
            for (var field = 3; field < 22 && fields.IndexOf((byte)' ') is var space and >= 0; field++)
            {
                fields = fields[(space + 1)..];
            }

            var end = fields.IndexOf((byte)' ');
            if (end > 0 && long.TryParse(fields[..end], NumberStyles.None, CultureInfo.InvariantCulture, out var ticks)
                && BootTime() is { } boot)
            {
                return boot + TimeSpan.FromSeconds(ticks / 100.0);
            }
        }

        return DateTimeOffset.UtcNow;
    }

    private static DateTimeOffset? BootTime()
    {
        try
        {
            // Once, at start: /proc/stat's interrupt line can run to kilobytes before btime.
            foreach (var line in File.ReadLines("/proc/stat"))
            {
                if (line.StartsWith("btime ", StringComparison.Ordinal)
                    && long.TryParse(line.AsSpan(6).Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var seconds))
                {
                    return DateTimeOffset.FromUnixTimeSeconds(seconds);
                }
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // Unknown.
        }

        return null;
    }
}
