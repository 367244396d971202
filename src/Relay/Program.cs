using System.Collections.Immutable;
using System.Runtime.InteropServices;
using Relay.Configuration;
using Relay.Hosting;
using Relay.SampleServer;

namespace Relay;

public static class RelayProgram
{
    public const int ExitOk = 0;
    public const int ExitFailure = 1;
    public const int ExitUsage = 2;

    public const string Usage = """
        relay: a TCP relay that keeps sessions alive across backend failures.

        Usage:
          relay --config FILE [options]           run with a JSON configuration (reloaded on change)
          relay --route LISTEN=UPSTREAM[,UPSTREAM...] [--route ...] [options]
                                                  forward at once, no file needed (like socat)
          relay --check-config FILE               validate a configuration, print every problem, exit
          relay sample-server --listen ADDR [--id NAME]
                                                  run the sample line-protocol game backend
          relay agent --config FILE | --id ID --control ADDR --backend ADDR --path IP [--psk-file F]
                                                  run beside an endpoint for echo and splice (agent --help)
          relay predict-eval [--out FILE] [--tune] [--nab DIR]
                                                  replay Relay.Predict's evaluation (predict-eval --help)
          relay --help | --version

        Options:
          --config FILE           JSON configuration; see config/relay.json for every key and default
          --route L=U[,U...]      a route from listen address L to upstreams U (repeatable); each
                                  becomes route "routeN" and cluster "routeN" with defaults
          --echo CODEC            echo every --route session to a shadow and splice it onto the
                                  shadow when its primary fails or is drained (docs/splice.md);
                                  CODEC: raw, lines, length-prefixed-16, length-prefixed-32, resp
          --agent U=A             the `relay agent` beside upstream U listens on control address A
                                  (repeatable; an upstream without one is never a shadow)
          --shadows N             shadows per echoed session (default 1)
          --echo-psk-file F       pre-shared key shared with the agents (>= 32 bytes); otherwise
                                  $RELAY_ECHO_PSK
          --admin ADDR|off        admin API address (default 127.0.0.1:9901; overrides admin.listen)
          --admin-token-file F    file holding the admin bearer token (overrides admin.tokenFile);
                                  otherwise $RELAY_ADMIN_TOKEN, otherwise one is generated and its
                                  file is logged
          --drain-timeout D       how long shutdown waits for sessions, e.g. 30s (default 30s)
          --log-level LEVEL       trace, debug, information, warning, error (default information)
          --check-config FILE     validate FILE and exit: 0 valid, 2 invalid

        Addresses are host:port, IPv6 in brackets ([::1]:7000). Durations take a unit: 500ms, 2s, 5m, 1h.
        Signals: SIGINT/SIGTERM stop accepting and drain live sessions up to the drain timeout.
        Exit codes: 0 ok, 1 runtime failure, 2 bad usage or configuration.
        """;

    /// <summary>
    /// Idle thread-pool workers sleep at once rather than spin in <c>sched_yield</c> for work that
    /// rarely comes: the L4 data path runs on the socket engine's thread, so pool work is the echo
    /// transport's timers and datagrams, a few thousand items a second. Spinning for them cost the
    /// relay a context switch per echoed request and the agent most of its CPU (docs/benchmarks.md,
    /// session 12). An operator's <c>DOTNET_ThreadPool_UnfairSemaphoreSpinLimit</c> wins.
    /// </summary>
    private static void QuietIdleThreadPoolWorkers()
    {
        if (Environment.GetEnvironmentVariable("DOTNET_ThreadPool_UnfairSemaphoreSpinLimit") is null)
        {
            AppContext.SetData("System.Threading.ThreadPool.UnfairSemaphoreSpinLimit", 0);
        }
    }

    public static async Task<int> Main(string[] args)
    {
        ArgumentNullException.ThrowIfNull(args);
        if (args.Length > 0 && args[0] == "sample-server")
        {
            return await SampleServerMainAsync(args[1..]).ConfigureAwait(false);
        }

        if (args.Length > 0 && args[0] == "predict-eval")
        {
            return Relay.PredictEval.Program.Main(args[1..]);
        }

        // Set before the pool starts a worker, in both modes.
        QuietIdleThreadPoolWorkers();
        if (args.Length > 0 && args[0] == "agent")
        {
            return await Relay.Agent.AgentCommandLine.MainAsync(args[1..]).ConfigureAwait(false);
        }

        if (!CommandLine.TryParse(args, out var command, out var usageError))
        {
            await Console.Error.WriteLineAsync($"relay: {usageError}\nTry 'relay --help'.").ConfigureAwait(false);
            return ExitUsage;
        }

        if (command.Help)
        {
            Console.WriteLine(Usage);
            return ExitOk;
        }

        if (command.Version)
        {
            Console.WriteLine($"relay {typeof(RelayProgram).Assembly.GetName().Version}");
            return ExitOk;
        }

        if (command.CheckConfig is { } checkPath)
        {
            var check = ConfigLoader.LoadFile(checkPath);
            if (check.IsValid)
            {
                Console.WriteLine($"{checkPath}: valid ({check.Config!.Routes.Count} route(s), {check.Config.Clusters.Count} cluster(s))");
                return ExitOk;
            }

            await Console.Error.WriteLineAsync($"{checkPath}: {check.Errors.Count} problem(s):").ConfigureAwait(false);
            foreach (var error in check.Errors)
            {
                await Console.Error.WriteLineAsync($"  {error}").ConfigureAwait(false);
            }

            return ExitUsage;
        }

        if (!TryBuildConfig(command, out var config, out var errors))
        {
            await Console.Error.WriteLineAsync($"relay: the configuration has {errors.Count} problem(s):").ConfigureAwait(false);
            foreach (var error in errors)
            {
                await Console.Error.WriteLineAsync($"  {error}").ConfigureAwait(false);
            }

            return ExitUsage;
        }

        // Run socket completions on the epoll thread (the brief's measurement: with Kestrel's inline
        // scheduling this took a naive relay from ~45% to 93-97% of HAProxy's rate at -P 1). Read once
        // when the socket engine starts, so set it before any socket exists; an operator's value wins.
        if (Environment.GetEnvironmentVariable("DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS") is null && config.Tuning.InlineScheduling)
        {
            Environment.SetEnvironmentVariable("DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS", "1");
        }

        RelayApp app;
        try
        {
            app = RelayApp.Create(config, new RelayAppOptions { ConfigPath = command.ConfigPath, MinimumLogLevel = command.LogLevel });
        }
        catch (RelayStartException ex)
        {
            await Console.Error.WriteLineAsync(ex.Message).ConfigureAwait(false);
            return ExitUsage;
        }

        await using (app.ConfigureAwait(false))
        {
            try
            {
                await app.StartAsync().ConfigureAwait(false);
            }
            catch (RelayStartException ex)
            {
                await Console.Error.WriteLineAsync(ex.Message).ConfigureAwait(false);
                return ExitFailure;
            }

            PrintReady(app);
            var stop = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, Stop);
            using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Stop);
            await stop.Task.ConfigureAwait(false);
            await app.StopAsync().ConfigureAwait(false);
            return ExitOk;

            void Stop(PosixSignalContext context)
            {
                context.Cancel = true;
                stop.TrySetResult();
            }
        }
    }

    private static void PrintReady(RelayApp app)
    {
        foreach (var (route, address) in app.RouteAddresses.OrderBy(r => r.Key, StringComparer.Ordinal))
        {
            var cluster = app.Runtime.Snapshot.Config.Routes[route].Cluster;
            var endpoints = string.Join(", ", app.Runtime.Snapshot.Clusters[cluster].Endpoints.Select(e => $"{e.Config.Address.Host}:{e.Config.Address.Port}"));
            Console.WriteLine($"relay: route {route} listening on {address} -> {endpoints}");
        }

        if (app.AdminAddress is { } admin)
        {
            Console.WriteLine($"relay: admin API on {admin} (bearer token from {app.Token.Source})");
        }

        Console.Out.Flush();
    }

    internal static bool TryBuildConfig(CommandLine command, out RelayConfig config, out IReadOnlyList<string> errors)
    {
        config = new RelayConfig();
        if (command.ConfigPath is { } path)
        {
            var loaded = ConfigLoader.LoadFile(path);
            if (!loaded.IsValid)
            {
                errors = loaded.Errors;
                return false;
            }

            config = loaded.Config!;
        }

        var problems = new List<string>();
        if (command.Routes.Count > 0)
        {
            var routes = config.Routes.ToBuilder();
            var clusters = config.Clusters.ToBuilder();
            for (var i = 0; i < command.Routes.Count; i++)
            {
                var name = $"route{i + 1}";
                var spec = command.Routes[i];
                var key = $"--route {spec}";
                var equals = spec.IndexOf('=', StringComparison.Ordinal);
                if (equals <= 0 || equals == spec.Length - 1)
                {
                    problems.Add($"{key}: expected LISTEN=UPSTREAM[,UPSTREAM...], e.g. 127.0.0.1:7000=127.0.0.1:6379");
                    continue;
                }

                if (!AddressParser.TryParseListen(spec[..equals], out var listen, out var listenProblem))
                {
                    problems.Add($"{key}: listen address {listenProblem}");
                    continue;
                }

                var endpoints = ImmutableDictionary.CreateBuilder<string, EndpointConfig>(StringComparer.Ordinal);
                var upstreams = spec[(equals + 1)..].Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
                for (var u = 0; u < upstreams.Length; u++)
                {
                    if (!AddressParser.TryParseUpstream(upstreams[u], out var upstream, out var upstreamProblem))
                    {
                        problems.Add($"{key}: upstream {upstreamProblem}");
                        continue;
                    }

                    var id = $"{name}-{u + 1}";
                    var agent = command.Agents.TryGetValue($"{upstream.Host}:{upstream.Port}", out var agentAddress) ? agentAddress : null;
                    endpoints[id] = new EndpointConfig { Id = id, Address = upstream, Agent = agent };
                }

                EchoPolicyConfig? echo = command.EchoCodec is { } codec ? new EchoPolicyConfig { Codec = codec, Shadows = command.Shadows ?? 1 } : null;
                routes[name] = new RouteConfig { Name = name, Listen = listen, Cluster = name, Echo = echo };
                clusters[name] = new ClusterConfig { Name = name, Endpoints = endpoints.ToImmutable() };
            }

            config = config with { Routes = routes.ToImmutable(), Clusters = clusters.ToImmutable() };
        }

        foreach (var (upstream, _) in command.Agents)
        {
            if (!command.Routes.Any(r => r[(r.IndexOf('=', StringComparison.Ordinal) + 1)..].Split(',', StringSplitOptions.TrimEntries).Contains(upstream, StringComparer.OrdinalIgnoreCase)))
            {
                problems.Add($"--agent {upstream}=...: {upstream} is not an upstream of any --route");
            }
        }

        if (command.EchoCodec is not null && command.Routes.Count == 0)
        {
            problems.Add("--echo: applies to --route routes; a configuration file sets \"echo\" per route instead");
        }

        if (command.EchoPskFile is { } pskFile)
        {
            config = config with { Echo = config.Echo with { PskFile = pskFile } };
        }

        if (command.ConfigPath is null && command.Routes.Count == 0)
        {
            problems.Add("nothing to relay: give --config FILE or at least one --route LISTEN=UPSTREAM");
        }

        if (command.Admin is { } admin)
        {
            if (admin == "off")
            {
                config = config with { Admin = config.Admin with { Listen = null } };
            }
            else if (AddressParser.TryParseListen(admin, out var adminEndPoint, out var adminProblem))
            {
                config = config with { Admin = config.Admin with { Listen = adminEndPoint } };
            }
            else
            {
                problems.Add($"--admin: {adminProblem}");
            }
        }

        if (command.AdminTokenFile is { } tokenFile)
        {
            config = config with { Admin = config.Admin with { TokenFile = tokenFile } };
        }

        if (command.DrainTimeout is { } drain)
        {
            config = config with { Shutdown = new ShutdownConfig { DrainTimeout = drain } };
        }

        if (problems.Count == 0)
        {
            ConfigValidator.Validate(config, problems);
        }

        errors = problems;
        return problems.Count == 0;
    }

    private static async Task<int> SampleServerMainAsync(string[] args)
    {
        string? listen = null;
        var id = $"sample-{Environment.ProcessId}";
        for (var i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--listen" when i + 1 < args.Length:
                    listen = args[++i];
                    break;
                case "--id" when i + 1 < args.Length:
                    id = args[++i];
                    break;
                case "--help" or "-h":
                    Console.WriteLine("relay sample-server --listen ADDR [--id NAME]\n\nLine protocol, one reply line per request line, each prefixed by the message number:\n  HELLO | MOVE dx dy | SCORE n | ECHO text | STATE | WHO | QUIT");
                    return ExitOk;
                default:
                    await Console.Error.WriteLineAsync($"relay sample-server: unknown or incomplete argument \"{args[i]}\"; try --help").ConfigureAwait(false);
                    return ExitUsage;
            }
        }

        if (listen is null)
        {
            await Console.Error.WriteLineAsync("relay sample-server: --listen ADDR is required").ConfigureAwait(false);
            return ExitUsage;
        }

        if (!AddressParser.TryParseListen(listen, out var endPoint, out var problem))
        {
            await Console.Error.WriteLineAsync($"relay sample-server: --listen {problem}").ConfigureAwait(false);
            return ExitUsage;
        }

        SampleServerHost host;
        try
        {
            host = new SampleServerHost(endPoint, id);
        }
        catch (System.Net.Sockets.SocketException ex)
        {
            await Console.Error.WriteLineAsync($"relay sample-server: cannot listen on {endPoint}: {ex.Message}").ConfigureAwait(false);
            return ExitFailure;
        }

        await using (host.ConfigureAwait(false))
        {
            host.Start();
            Console.WriteLine($"sample-server {id} listening on {host.LocalEndPoint}");
            var stop = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.TrySetResult(); });
            using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.TrySetResult(); });
            await stop.Task.ConfigureAwait(false);
        }

        return ExitOk;
    }
}

/// <summary>The parsed command line of the relay mode.</summary>
internal sealed class CommandLine
{
    public string? ConfigPath { get; private set; }

    public string? CheckConfig { get; private set; }

    public List<string> Routes { get; } = [];

    public string? Admin { get; private set; }

    public EchoCodec? EchoCodec { get; private set; }

    public int? Shadows { get; private set; }

    public string? EchoPskFile { get; private set; }

    /// <summary>Upstream "host:port" to the control address of the agent beside it.</summary>
    public Dictionary<string, System.Net.IPEndPoint> Agents { get; } = new(StringComparer.OrdinalIgnoreCase);

    public string? AdminTokenFile { get; private set; }

    public TimeSpan? DrainTimeout { get; private set; }

    public LogLevel LogLevel { get; private set; } = LogLevel.Information;

    public bool Help { get; private set; }

    public bool Version { get; private set; }

    public static bool TryParse(string[] args, out CommandLine command, out string? error)
    {
        command = new CommandLine();
        error = null;
        for (var i = 0; i < args.Length; i++)
        {
            var arg = args[i];
            string? value = null;
            var eq = arg.StartsWith("--", StringComparison.Ordinal) ? arg.IndexOf('=', StringComparison.Ordinal) : -1;
            if (eq > 0 && arg != "--route" && arg != "--agent")
            {
                // --name=value form; --route and --agent values contain '=' themselves, so only split the flag name.
                value = arg[(eq + 1)..];
                arg = arg[..eq];
            }

            string Next(ref int index)
            {
                if (value is not null)
                {
                    return value;
                }

                if (index + 1 >= args.Length)
                {
                    throw new FormatException($"{arg} needs a value");
                }

                return args[++index];
            }

            try
            {
                switch (arg)
                {
                    case "--help" or "-h":
                        command.Help = true;
                        break;
                    case "--version":
                        command.Version = true;
                        break;
                    case "--config" or "-c":
                        command.ConfigPath = Next(ref i);
                        break;
                    case "--check-config":
                        command.CheckConfig = Next(ref i);
                        break;
                    case "--route" or "-r":
                        command.Routes.Add(Next(ref i));
                        break;
                    case "--admin":
                        command.Admin = Next(ref i);
                        break;
                    case "--echo":
                        var codecText = Next(ref i);
                        command.EchoCodec = codecText.ToLowerInvariant() switch
                        {
                            "raw" => Configuration.EchoCodec.Raw,
                            "lines" => Configuration.EchoCodec.Lines,
                            "length-prefixed-16" => Configuration.EchoCodec.LengthPrefixed16,
                            "length-prefixed-32" => Configuration.EchoCodec.LengthPrefixed32,
                            "resp" => Configuration.EchoCodec.Resp,
                            _ => throw new FormatException($"--echo: \"{codecText}\" is not one of raw, lines, length-prefixed-16, length-prefixed-32, resp"),
                        };
                        break;
                    case "--shadows":
                        var shadowsText = Next(ref i);
                        command.Shadows = int.TryParse(shadowsText, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var shadows) && shadows <= 8
                            ? shadows
                            : throw new FormatException($"--shadows: \"{shadowsText}\" is not a whole number from 0 to 8");
                        break;
                    case "--echo-psk-file":
                        command.EchoPskFile = Next(ref i);
                        break;
                    case "--agent":
                        var agentSpec = Next(ref i);
                        var split = agentSpec.LastIndexOf('=');
                        if (split <= 0 || split == agentSpec.Length - 1)
                        {
                            throw new FormatException($"--agent {agentSpec}: expected UPSTREAM=AGENT, e.g. 127.0.0.1:7102=127.0.0.1:7202");
                        }

                        if (!AddressParser.TryParseUpstream(agentSpec[..split], out var agentUpstream, out var upstreamProblem))
                        {
                            throw new FormatException($"--agent {agentSpec}: upstream {upstreamProblem}");
                        }

                        if (!AddressParser.TryParseListen(agentSpec[(split + 1)..], out var agentControl, out var agentProblem))
                        {
                            throw new FormatException($"--agent {agentSpec}: agent control address {agentProblem}");
                        }

                        command.Agents[$"{agentUpstream.Host}:{agentUpstream.Port}"] = agentControl;
                        break;
                    case "--admin-token-file":
                        command.AdminTokenFile = Next(ref i);
                        break;
                    case "--drain-timeout":
                        var text = Next(ref i);
                        if (!DurationParser.TryParse(text, out var drain) || drain < TimeSpan.Zero)
                        {
                            throw new FormatException($"--drain-timeout: \"{text}\" is not a duration such as 30s");
                        }

                        command.DrainTimeout = drain;
                        break;
                    case "--log-level":
                        var level = Next(ref i);
                        if (!Enum.TryParse<LogLevel>(level, ignoreCase: true, out var parsed) || !Enum.IsDefined(parsed))
                        {
                            throw new FormatException($"--log-level: \"{level}\" is not one of trace, debug, information, warning, error, critical, none");
                        }

                        command.LogLevel = parsed;
                        break;
                    default:
                        throw new FormatException($"unknown argument \"{args[i]}\"");
                }
            }
            catch (FormatException ex)
            {
                error = ex.Message;
                return false;
            }
        }

        return true;
    }
}
