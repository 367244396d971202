using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Relay.Agent;
using Relay.FunctionalTests.Infrastructure;
using Relay.Transport.Sockets;

namespace Relay.FunctionalTests.Echo;

/// <summary>A backend in its own process (so a test can kill -9 it): `relay sample-server` or redis-server.</summary>
public sealed class BackendProcess : IDisposable
{
    private readonly Process _process;

    private BackendProcess(Process process, IPEndPoint endPoint)
    {
        _process = process;
        EndPoint = endPoint;
    }

    public IPEndPoint EndPoint { get; }

    public string Address => $"127.0.0.1:{EndPoint.Port}";

    public bool HasExited => _process.HasExited;

    /// <summary>Starts <paramref name="count"/> sample servers with ids s0, s1, ... (endpoints a, b, ... of a testbed).</summary>
    public static async Task<List<BackendProcess>> StartSampleServersAsync(int count)
    {
        var backends = new List<BackendProcess>();
        for (var i = 0; i < count; i++)
        {
            backends.Add(await StartSampleServerAsync($"s{i}"));
        }

        return backends;
    }

    /// <summary>
    /// Starts `relay sample-server` on a free port and waits for its ready line: the relay.dll built
    /// beside the tests, or the published <paramref name="relayExecutable"/>.
    /// </summary>
    public static async Task<BackendProcess> StartSampleServerAsync(string id, string? relayExecutable = null)
    {
        var info = new ProcessStartInfo(relayExecutable ?? "dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        string[] relay = relayExecutable is null ? [Path.Combine(AppContext.BaseDirectory, "relay.dll")] : [];
        foreach (var arg in relay.Concat(["sample-server", "--listen", "127.0.0.1:0", "--id", id]))
        {
            info.ArgumentList.Add(arg);
        }

        var process = Process.Start(info) ?? throw new InvalidOperationException("sample-server did not start");
        process.ErrorDataReceived += static (_, _) => { };
        process.BeginErrorReadLine();
        try
        {
            var line = await process.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(60));
            var at = line?.LastIndexOf(' ') ?? -1;
            if (line is null || at < 0 || !IPEndPoint.TryParse(line[(at + 1)..], out var endPoint))
            {
                throw new InvalidOperationException($"sample-server printed \"{line}\" instead of its address");
            }

            _ = DrainAsync(process.StandardOutput);
            return new BackendProcess(process, endPoint);
        }
        catch
        {
            process.Kill(entireProcessTree: true);
            process.Dispose();
            throw;
        }
    }

    /// <summary>Starts redis-server on a free port without persistence.</summary>
    public static async Task<BackendProcess> StartRedisAsync(string path)
    {
        var port = FreeTcpPort();
        var info = new ProcessStartInfo(path) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in new[] { "--port", port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--protected-mode", "no" })
        {
            info.ArgumentList.Add(arg);
        }

        var process = Process.Start(info) ?? throw new InvalidOperationException("redis-server did not start");
        process.OutputDataReceived += static (_, _) => { };
        process.ErrorDataReceived += static (_, _) => { };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var endPoint = new IPEndPoint(IPAddress.Loopback, port);
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        while (true)
        {
            try
            {
                using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                await probe.ConnectAsync(endPoint);
                return new BackendProcess(process, endPoint);
            }
            catch (SocketException) when (DateTime.UtcNow < deadline && !process.HasExited)
            {
                await Task.Delay(50);
            }
        }
    }

    private static async Task DrainAsync(StreamReader reader)
    {
        try
        {
            while (await reader.ReadLineAsync() is not null)
            {
            }
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException)
        {
        }
    }

    public static int FreeTcpPort()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)listener.LocalEndPoint!).Port;
    }

    /// <summary>kill -9: the process gets no chance to close anything itself.</summary>
    public void Kill()
    {
        _process.Kill();
        _process.WaitForExit(10_000);
    }

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            _process.WaitForExit(10_000);
        }

        _process.Dispose();
    }
}

/// <summary>
/// Endpoints (each a backend process with an in-process agent beside it) behind an in-process relay
/// whose route echoes every session.
/// </summary>
public sealed class EchoTestbed : IAsyncDisposable
{
    private readonly string _pskFile;
    private readonly List<BackendProcess> _backends;
    private readonly List<AgentHost> _agents;
    private readonly ILoggerFactory _agentLogs;

    private EchoTestbed(TestRelay relay, string pskFile, List<BackendProcess> backends, List<AgentHost> agents, ILoggerFactory agentLogs, TestLog agentLog)
    {
        Relay = relay;
        _pskFile = pskFile;
        _backends = backends;
        _agents = agents;
        _agentLogs = agentLogs;
        AgentLog = agentLog;
    }

    public TestRelay Relay { get; }

    public TestLog AgentLog { get; }

    public IReadOnlyList<BackendProcess> Backends => _backends;

    /// <summary>The in-process agents, one per endpoint, in endpoint order (a, b, …).</summary>
    public IReadOnlyList<AgentHost> Agents => _agents;

    public static string EndpointId(int i) => ((char)('a' + i)).ToString();

    /// <summary>
    /// Starts <paramref name="backends"/> (endpoint ids a, b, c…), an agent beside each, and a relay
    /// with route "svc" echoing with <paramref name="echoPolicy"/> (JSON object text) over two UDP
    /// paths, on loopback unless <paramref name="options"/> creates the path sockets elsewhere.
    /// </summary>
    public static async Task<EchoTestbed> StartAsync(IReadOnlyList<BackendProcess> backends, string echoPolicy, string? extraEndpointJson = null, EchoTestbedOptions? options = null)
    {
        var pskFile = Path.GetTempFileName();
        await File.WriteAllBytesAsync(pskFile, Encoding.ASCII.GetBytes(Convert.ToHexString(RandomNumberGenerator.GetBytes(32))));
        var agentLog = new TestLog();
        var loggerFactory = LoggerFactory.Create(b => b.AddProvider(agentLog).SetMinimumLevel(LogLevel.Debug));
        var agents = new List<AgentHost>();
        var psk = await File.ReadAllBytesAsync(pskFile);
        try
        {
            for (var i = 0; i < backends.Count; i++)
            {
                var agentIndex = i;
                agents.Add(await AgentHost.StartAsync(
                    new AgentOptions
                    {
                        Id = $"agent-{EndpointId(i)}",
                        Control = new IPEndPoint(IPAddress.Loopback, 0),
                        Backend = new DnsEndPoint("127.0.0.1", backends[i].EndPoint.Port),
                        Paths = [IPAddress.Loopback],
                        Psk = psk,
                        PathSocketFactory = options?.AgentPathSocketFactory is { } agentPaths ? (path, relay) => agentPaths(agentIndex, path, relay) : null,
                        CpuPercentSource = options?.AgentCpuPercent is { } cpu ? () => cpu(agentIndex) : null,
                    },
                    loggerFactory,
                    CancellationToken.None));
            }

            var endpoints = string.Join(",\n", backends.Select((b, i) =>
                $$"""      "{{EndpointId(i)}}": { "address": "{{b.Address}}", "agent": "{{agents[i].ControlEndPoint}}", "zone": "z{{i}}" {{extraEndpointJson}} }"""));
            var json = $$"""
                {
                  "echo": { "pskFile": {{JsonSerializer.Serialize(pskFile)}}, "paths": ["127.0.0.1", "127.0.0.1"], "takeoverTimeout": "3s" },
                  {{options?.ExtraConfigJson}}
                  "routes": { "svc": { "listen": "127.0.0.1:0", "cluster": "svc", "idleTimeout": "0s", "echo": {{echoPolicy}} } },
                  "clusters": { "svc": {
                    "connectTimeout": "1s",
                    "healthCheck": { "active": { "interval": "300ms", "timeout": "200ms" } },
                    "endpoints": {
                {{endpoints}}
                    } } }
                }
                """;
            var relay = await TestRelay.StartAsync(json, beforeStart: app =>
            {
                app.Echo.PathSocketFactory = options?.RelayPathSocketFactory;
                app.Echo.PathSocketWrapper = options?.RelayPathSocketWrapper;
            });
            var bed = new EchoTestbed(relay, pskFile, [.. backends], agents, loggerFactory, agentLog);
            await bed.WaitUntilAsync(() => bed.Relay.App.Echo.Links.All(l => l.Connected), "every agent connects", TimeSpan.FromSeconds(20));
            return bed;
        }
        catch
        {
            foreach (var agent in agents)
            {
                await agent.DisposeAsync();
            }

            loggerFactory.Dispose();
            File.Delete(pskFile);
            throw;
        }
    }

    public async Task WaitUntilAsync(Func<bool> condition, string what, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(30));
        while (!condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"timed out waiting until {what}\nrelay log (last lines):\n{Relay.Log.Tail(40)}\nagent log (last lines):\n{AgentLog.Tail(40)}");
            }

            await Task.Delay(20);
        }
    }

    /// <summary>True when every echoed session has <paramref name="shadows"/> Ready shadows.</summary>
    public bool AllShadowsReady(int shadows) => Relay.App.Echo.Sessions.All(s =>
        s.Echo.Shadows.Count(x => x.State == global::Relay.Echo.ShadowState.Ready) >= shadows);

    public async ValueTask DisposeAsync()
    {
        await Relay.DisposeAsync();
        foreach (var agent in _agents)
        {
            await agent.DisposeAsync();
        }

        foreach (var backend in _backends)
        {
            backend.Dispose();
        }

        _agentLogs.Dispose();
        File.Delete(_pskFile);
    }
}

/// <summary>Test hooks of an <see cref="EchoTestbed"/>: where the echo channels' UDP path sockets are created.</summary>
public sealed class EchoTestbedOptions
{
    /// <summary>(path index, placeholder remote) → the relay's bound socket for that path; null binds 127.0.0.1.</summary>
    public Func<int, IPEndPoint, UdpDatagramSocket>? RelayPathSocketFactory { get; init; }

    /// <summary>(path index, the relay's bound and aimed socket) → the socket its echo channel uses (e.g. one that repeats datagrams); null uses the socket itself.</summary>
    public Func<int, IDatagramSocket, IDatagramSocket>? RelayPathSocketWrapper { get; init; }

    /// <summary>(agent index, path index, the relay's endpoint of that path) → the agent's bound socket aimed at it; null binds 127.0.0.1.</summary>
    public Func<int, int, IPEndPoint, UdpDatagramSocket>? AgentPathSocketFactory { get; init; }

    /// <summary>Agent index → the CPU percent its heartbeats report; null reports the agent's real process CPU.</summary>
    public Func<int, double>? AgentCpuPercent { get; init; }

    /// <summary>Top-level relay configuration members placed before "routes", with their trailing comma (e.g. a "prediction" section).</summary>
    public string? ExtraConfigJson { get; init; }
}
