using System.Diagnostics;
using Relay.FunctionalTests.Infrastructure;

namespace Relay.FunctionalTests.Cli;

/// <summary>Runs the real `relay` executable as an operator would.</summary>
public class CommandLineTests
{
    private static readonly string s_relay = Path.Combine(AppContext.BaseDirectory, "relay.dll");

    internal static Task<(int ExitCode, string StdOut, string StdErr)> RunAsync(TimeSpan timeout, params string[] args) =>
        ExternalProcess.RunAsync("dotnet", timeout, [s_relay, .. args]);

    [Fact]
    public async Task Help_DocumentsEveryFlag()
    {
        var (exit, stdout, _) = await RunAsync(TimeSpan.FromSeconds(60), "--help");
        Assert.Equal(0, exit);
        foreach (var flag in new[] { "--config", "--route", "--echo", "--agent", "--shadows", "--echo-psk-file", "--check-config", "--admin", "--admin-token-file", "--drain-timeout", "--log-level", "sample-server", "agent", "--version" })
        {
            Assert.Contains(flag, stdout, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task CheckConfig_ListsEveryProblemWithItsKey_AndExits2()
    {
        var path = Path.Combine(Path.GetTempPath(), $"relay-bad-{Guid.NewGuid():N}.json");
        await File.WriteAllTextAsync(path, """
            {
              "routes": {
                "a": { "listen": "127.0.0.1:7000", "cluster": "missing", "idleTimeout": "5 minutes" },
                "b": { "listen": "127.0.0.1:7000", "cluster": "c", "maxSesions": 3 }
              },
              "clusters": {
                "c": {
                  "loadBalancing": "fastest",
                  "healthCheck": { "active": { "interval": "1s", "timeout": "2s" } },
                  "endpoints": { "x": { "address": "nowhere" }, "y": { "address": "127.0.0.1:99999" } }
                }
              }
            }
            """);
        try
        {
            var (exit, _, stderr) = await RunAsync(TimeSpan.FromSeconds(60), "--check-config", path);
            Assert.Equal(2, exit);
            Assert.Contains("routes.a.idleTimeout: expected a duration", stderr, StringComparison.Ordinal);
            Assert.Contains("routes.b.maxSesions: unknown key (did you mean \"maxSessions\"?)", stderr, StringComparison.Ordinal);
            Assert.Contains("clusters.c.loadBalancing: \"fastest\" is not one of", stderr, StringComparison.Ordinal);
            Assert.Contains("clusters.c.endpoints.x.address: \"nowhere\" is not host:port", stderr, StringComparison.Ordinal);
            Assert.Contains("clusters.c.endpoints.y.address: \"127.0.0.1:99999\": the port must be a number from 0 to 65535", stderr, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public async Task CheckConfig_ReportsContradictions()
    {
        var path = Path.Combine(Path.GetTempPath(), $"relay-contra-{Guid.NewGuid():N}.json");
        await File.WriteAllTextAsync(path, """
            {
              "routes": {
                "a": { "listen": "127.0.0.1:7000", "cluster": "missing" },
                "b": { "listen": "127.0.0.1:7000", "cluster": "c" }
              },
              "clusters": { "c": { "healthCheck": { "active": { "interval": "1s", "timeout": "2s" } }, "endpoints": { "x": { "address": "127.0.0.1:1" } } } }
            }
            """);
        try
        {
            var (exit, _, stderr) = await RunAsync(TimeSpan.FromSeconds(60), "--check-config", path);
            Assert.Equal(2, exit);
            Assert.Contains("routes.a.cluster: cluster \"missing\" is not defined (defined: c)", stderr, StringComparison.Ordinal);
            Assert.Contains("routes.b.listen: 127.0.0.1:7000 is already the listen address of routes.a", stderr, StringComparison.Ordinal);
            Assert.Contains("clusters.c.healthCheck.active.timeout: 2s must be shorter than interval (1s)", stderr, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void ShippedConfigFiles_AreAllValid()
    {
        var root = FindRepositoryRoot();
        var files = Directory.GetFiles(Path.Combine(root, "config"), "*.json", SearchOption.AllDirectories);
        Assert.NotEmpty(files);
        foreach (var file in files)
        {
            var result = Relay.Configuration.ConfigLoader.LoadFile(file);
            Assert.True(result.IsValid, $"{file}: {string.Join("; ", result.Errors)}");
        }
    }

    [Fact]
    public async Task RouteFlag_ForwardsAtOnce_AndStopsCleanlyOnSigterm()
    {
        await using var upstream = TestUpstream.Echo();
        var port = Ports.Unused();
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in new[] { s_relay, "--route", $"127.0.0.1:{port}={upstream.Address}", "--admin", "off" })
        {
            info.ArgumentList.Add(arg);
        }

        using var process = Process.Start(info)!;
        try
        {
            var line = await process.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(60));
            Assert.Equal($"relay: route route1 listening on 127.0.0.1:{port} -> {upstream.Address}", line);
            using var client = new System.Net.Sockets.Socket(System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
            await client.ConnectAsync(System.Net.IPAddress.Loopback, port).WaitAsync(TimeSpan.FromSeconds(10));
            await client.SendAllAsync("via cli"u8.ToArray());
            Assert.Equal("via cli"u8.ToArray(), await client.ReceiveExactlyAsync(7));
            client.Close();

            Assert.Equal(0, Kill(process.Id));
            await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
            Assert.Equal(0, process.ExitCode);
        }
        finally
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
            }
        }
    }

    [Fact]
    public async Task BadRouteFlag_NamesTheFlagAndExits2()
    {
        var (exit, _, stderr) = await RunAsync(TimeSpan.FromSeconds(60), "--route", "127.0.0.1:7000");
        Assert.Equal(2, exit);
        Assert.Contains("--route 127.0.0.1:7000: expected LISTEN=UPSTREAM", stderr, StringComparison.Ordinal);
    }

    /// <summary>kill -TERM, as an operator or systemd stops the relay.</summary>
    internal static int Kill(int pid)
    {
        using var kill = Process.Start(new ProcessStartInfo("kill", ["-TERM", pid.ToString(System.Globalization.CultureInfo.InvariantCulture)]))!;
        kill.WaitForExit();
        return kill.ExitCode;
    }

    internal static string FindRepositoryRoot()
    {
        var directory = new DirectoryInfo(AppContext.BaseDirectory);
        while (directory is not null && !File.Exists(Path.Combine(directory.FullName, "Relay.sln")))
        {
            directory = directory.Parent;
        }

        return directory?.FullName ?? throw new InvalidOperationException("Relay.sln not found above " + AppContext.BaseDirectory);
    }
}
