using Relay.Agent;

namespace Relay.Tests.Agent;

public sealed class HostMetricsTests
{
    [Fact]
    public void ReportsTheHostsCpuAndMemoryFromProc()
    {
        if (!File.Exists("/proc/stat") || !File.Exists("/proc/meminfo"))
        {
            Assert.Skip("needs /proc (Linux)");
        }

        using var metrics = new HostMetrics();
        Assert.Equal("host", metrics.Source);

        // Burn a little CPU so the busy share has something to measure.
        var until = DateTime.UtcNow.AddMilliseconds(200);
        var spins = 0L;
        while (DateTime.UtcNow < until)
        {
            spins++;
        }

        var cpu = metrics.CpuPercent();
        Assert.InRange(cpu, 0.0, 100.0);
        Assert.True(spins > 0);
        var (used, total) = HostMetrics.Memory();
        Assert.True(total > 64L * 1024 * 1024, $"MemTotal {total}");
        Assert.InRange(used, 1, total);
    }
}
