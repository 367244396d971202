using System.Globalization;
using System.Net;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging.Console;
using Relay.Configuration;
using Relay.Transport.Crypto;

namespace Relay.Agent;

/// <summary>`relay agent`: the command line, the JSON file (<c>{ "agent": { ... } }</c>) and the process entry point.</summary>
public static class AgentCommandLine
{
    /// <summary>The environment variable that holds the pre-shared key when no pskFile is given.</summary>
    public const string PskEnvironmentVariable = "RELAY_ECHO_PSK";

    public const string Usage = """
        relay agent: keeps shadow sessions against a local backend and takes sessions over (docs/agent.md).

        Usage:
          relay agent --config FILE [options]
          relay agent --id NAME --control ADDR --backend ADDR [--path IP ...] [--psk-file FILE] [options]

        Options (each overrides the file's key of the same meaning):
          --config FILE           JSON file { "agent": { "id", "control", "backend", "paths", "pskFile",
                                  "heartbeatInterval", "ackInterval", "takeoverTimeout",
                                  "backendConnectTimeout", "maxShadowSessions", "maxRetainedOutputBytes" } };
                                  comments allowed
          --id NAME               the agent's name, sent to relays (agent.id)
          --control ADDR          control listen address, ip:port; port 0 picks one (agent.control)
          --backend ADDR          the local backend, host:port (agent.backend)
          --path IP               local IP of an echo UDP path (repeatable; agent.paths); default: the
                                  control address's IP
          --psk-file FILE         file holding the pre-shared key, at least 32 bytes (agent.pskFile);
                                  otherwise $RELAY_ECHO_PSK
          --heartbeat-interval D  default 500ms          --ack-interval D      default 2ms
          --takeover-timeout D    default 2s             --max-shadow-sessions N default 10000
          --log-level LEVEL       trace, debug, information, warning, error (default information)

        Durations take a unit: 500ms, 2s, 5m. When ready, prints "agent <id> control <ip:port> backend
        <host:port>" on stdout; logs go to stderr. Exit codes: 0 ok, 1 runtime failure, 2 bad usage or
        configuration.
        """;

    private static readonly JsonDocumentOptions s_documentOptions = new() { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true };

    /// <summary>Runs the agent until SIGINT or SIGTERM.</summary>
    public static async Task<int> MainAsync(string[] args)
    {
        ArgumentNullException.ThrowIfNull(args);
        if (args.Any(a => a is "--help" or "-h"))
        {
            Console.WriteLine(Usage);
            return RelayProgram.ExitOk;
        }

        var parsed = TryParse(args, Environment.GetEnvironmentVariable(PskEnvironmentVariable), out var options, out var logLevel, out var errors);
        if (!parsed)
        {
            await Console.Error.WriteLineAsync($"relay agent: the configuration has {errors.Count} problem(s):").ConfigureAwait(false);
            foreach (var error in errors)
            {
                await Console.Error.WriteLineAsync($"  {error}").ConfigureAwait(false);
            }

            await Console.Error.WriteLineAsync("Try 'relay agent --help'.").ConfigureAwait(false);
            return RelayProgram.ExitUsage;
        }

        using var loggerFactory = LoggerFactory.Create(builder =>
        {
            // Logs go to stderr; stdout carries only the ready line, which scripts read.
            builder.AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
            builder.AddSimpleConsole(o =>
            {
                o.SingleLine = true;
                o.TimestampFormat = "HH:mm:ss.fff ";
                o.ColorBehavior = LoggerColorBehavior.Disabled;
            });
            builder.SetMinimumLevel(logLevel);
        });

        AgentHost host;
        try
        {
            host = await AgentHost.StartAsync(options, loggerFactory).ConfigureAwait(false);
        }
        catch (System.Net.Sockets.SocketException ex)
        {
            await Console.Error.WriteLineAsync($"relay agent: cannot listen on agent.control {options.Control}: {ex.Message}").ConfigureAwait(false);
            return RelayProgram.ExitFailure;
        }

        await using (host.ConfigureAwait(false))
        {
            Console.WriteLine($"agent {options.Id} control {host.ControlEndPoint} backend {options.Backend!.Host}:{options.Backend.Port}");
            Console.Out.Flush();
            var stop = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.TrySetResult(); });
            using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.TrySetResult(); });
            await stop.Task.ConfigureAwait(false);
        }

        return RelayProgram.ExitOk;
    }

    /// <summary>
    /// Builds the options from the arguments (after "agent") and, failing a pskFile, <paramref name="pskFromEnvironment"/>.
    /// Returns false with every problem, each naming its key or flag.
    /// </summary>
    public static bool TryParse(string[] args, string? pskFromEnvironment, out AgentOptions options, out LogLevel logLevel, out IReadOnlyList<string> errors)
    {
        ArgumentNullException.ThrowIfNull(args);
        options = new AgentOptions();
        logLevel = LogLevel.Information;
        var problems = new List<string>();
        string? pskFile = null;
        var paths = new List<IPAddress>();
        string? configPath = null;
        for (var i = 0; i < args.Length; i++)
        {
            if (args[i] is "--config" or "-c")
            {
                if (i + 1 < args.Length)
                {
                    configPath = args[i + 1];
                }
            }
        }

        if (configPath is not null)
        {
            ReadFile(configPath, options, paths, problems, ref pskFile);
        }

        var flagPaths = new List<IPAddress>();
        for (var i = 0; i < args.Length; i++)
        {
            var flag = args[i];
            string? value = null;
            var consumed = false;
            var eq = flag.StartsWith("--", StringComparison.Ordinal) ? flag.IndexOf('=', StringComparison.Ordinal) : -1;
            if (eq > 0)
            {
                value = flag[(eq + 1)..];
                flag = flag[..eq];
            }

            if (value is null)
            {
                if (i + 1 >= args.Length || !flag.StartsWith('-'))
                {
                    problems.Add(flag.StartsWith('-') ? $"{flag}: needs a value" : $"unknown argument \"{flag}\"");
                    continue;
                }

                value = args[++i];
                consumed = true;
            }

            switch (flag)
            {
                case "--config" or "-c":
                    break;
                case "--id":
                    options.Id = value;
                    break;
                case "--control":
                    SetControl(value, "--control", options, problems);
                    break;
                case "--backend":
                    SetBackend(value, "--backend", options, problems);
                    break;
                case "--path":
                    AddPath(value, "--path", flagPaths, problems);
                    break;
                case "--psk-file":
                    pskFile = value;
                    break;
                case "--heartbeat-interval":
                    options.HeartbeatInterval = Duration(value, "--heartbeat-interval", problems, options.HeartbeatInterval);
                    break;
                case "--ack-interval":
                    options.AckInterval = Duration(value, "--ack-interval", problems, options.AckInterval);
                    break;
                case "--takeover-timeout":
                    options.TakeoverTimeout = Duration(value, "--takeover-timeout", problems, options.TakeoverTimeout);
                    break;
                case "--max-shadow-sessions":
                    if (int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var max))
                    {
                        options.MaxShadowSessions = max;
                    }
                    else
                    {
                        problems.Add($"--max-shadow-sessions: \"{value}\" is not a whole number");
                    }

                    break;
                case "--log-level":
                    if (!Enum.TryParse(value, ignoreCase: true, out logLevel) || !Enum.IsDefined(logLevel))
                    {
                        problems.Add($"--log-level: \"{value}\" is not one of trace, debug, information, warning, error, critical, none");
                    }

                    break;
                default:
                    problems.Add($"unknown argument \"{flag}\"");
                    if (consumed)
                    {
                        i--;
                    }

                    break;
            }
        }

        if (flagPaths.Count > 0)
        {
            paths = flagPaths;
        }

        if (paths.Count == 0 && options.Control is { } control && !control.Address.Equals(IPAddress.Any) && !control.Address.Equals(IPAddress.IPv6Any))
        {
            paths.Add(control.Address);
        }

        options.Paths = paths;
        var beforePsk = problems.Count;
        ReadPsk(pskFile, pskFromEnvironment, options, problems);
        var pskReported = problems.Count > beforePsk;

        // Report every problem at once, but a key whose value was already refused only once.
        foreach (var error in options.Validate())
        {
            var names = error[..error.IndexOf(':', StringComparison.Ordinal)].Split([' ', '(', ')', ','], StringSplitOptions.RemoveEmptyEntries);
            var reported = (pskReported && names[0] == "agent.pskFile")
                || problems.Any(p => names.Any(n => (n.StartsWith("agent.", StringComparison.Ordinal) || n.StartsWith("--", StringComparison.Ordinal)) && p.StartsWith(n, StringComparison.Ordinal)));
            if (!reported)
            {
                problems.Add(error);
            }
        }

        errors = problems;
        return problems.Count == 0;
    }

    private static void ReadFile(string path, AgentOptions options, List<IPAddress> paths, List<string> problems, ref string? pskFile)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(File.ReadAllText(path), s_documentOptions);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            problems.Add($"--config {path}: cannot read the file: {ex.Message}");
            return;
        }
        catch (JsonException ex)
        {
            problems.Add($"{path}: not valid JSON at line {ex.LineNumber + 1}, byte {ex.BytePositionInLine + 1}: {ex.Message}");
            return;
        }

        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object || !document.RootElement.TryGetProperty("agent", out var agent) || agent.ValueKind != JsonValueKind.Object)
            {
                problems.Add($"{path}: expected an object with an \"agent\" object, as {{ \"agent\": {{ \"id\": \"game-b\", ... }} }}");
                return;
            }

            foreach (var property in agent.EnumerateObject())
            {
                var key = $"agent.{property.Name}";
                var value = property.Value;
                switch (property.Name)
                {
                    case "id":
                        options.Id = Text(value, key, problems) ?? "";
                        break;
                    case "control":
                        if (Text(value, key, problems) is { } control)
                        {
                            SetControl(control, key, options, problems);
                        }

                        break;
                    case "backend":
                        if (Text(value, key, problems) is { } backend)
                        {
                            SetBackend(backend, key, options, problems);
                        }

                        break;
                    case "paths":
                        if (value.ValueKind != JsonValueKind.Array)
                        {
                            problems.Add($"{key}: expected an array of IP addresses, as [\"127.0.0.1\"]");
                            break;
                        }

                        var index = 0;
                        foreach (var item in value.EnumerateArray())
                        {
                            if (Text(item, $"{key}[{index}]", problems) is { } ip)
                            {
                                AddPath(ip, $"{key}[{index}]", paths, problems);
                            }

                            index++;
                        }

                        break;
                    case "pskFile":
                        pskFile = Text(value, key, problems);
                        break;
                    case "heartbeatInterval":
                        options.HeartbeatInterval = Duration(Text(value, key, problems), key, problems, options.HeartbeatInterval);
                        break;
                    case "ackInterval":
                        options.AckInterval = Duration(Text(value, key, problems), key, problems, options.AckInterval);
                        break;
                    case "takeoverTimeout":
                        options.TakeoverTimeout = Duration(Text(value, key, problems), key, problems, options.TakeoverTimeout);
                        break;
                    case "backendConnectTimeout":
                        options.BackendConnectTimeout = Duration(Text(value, key, problems), key, problems, options.BackendConnectTimeout);
                        break;
                    case "maxShadowSessions":
                        if (value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out var max))
                        {
                            options.MaxShadowSessions = max;
                        }
                        else
                        {
                            problems.Add($"{key}: expected a whole number");
                        }

                        break;
                    case "maxRetainedOutputBytes":
                        if (value.ValueKind == JsonValueKind.Number && value.TryGetInt64(out var bytes))
                        {
                            options.MaxRetainedOutputBytes = bytes;
                        }
                        else
                        {
                            problems.Add($"{key}: expected a whole number of bytes");
                        }

                        break;
                    default:
                        problems.Add($"{key}: unknown key (known: id, control, backend, paths, pskFile, heartbeatInterval, ackInterval, takeoverTimeout, backendConnectTimeout, maxShadowSessions, maxRetainedOutputBytes)");
                        break;
                }
            }
        }
    }

    private static string? Text(JsonElement value, string key, List<string> problems)
    {
        if (value.ValueKind == JsonValueKind.String)
        {
            return value.GetString();
        }

        problems.Add($"{key}: expected a string");
        return null;
    }

    private static void SetControl(string text, string key, AgentOptions options, List<string> problems)
    {
        if (AddressParser.TryParseListen(text, out var endPoint, out var problem))
        {
            options.Control = endPoint;
        }
        else
        {
            problems.Add($"{key}: {problem}");
        }
    }

    private static void SetBackend(string text, string key, AgentOptions options, List<string> problems)
    {
        if (AddressParser.TryParseUpstream(text, out var endPoint, out var problem))
        {
            options.Backend = endPoint;
        }
        else
        {
            problems.Add($"{key}: {problem}");
        }
    }

    private static void AddPath(string text, string key, List<IPAddress> paths, List<string> problems)
    {
        if (IPAddress.TryParse(text, out var address))
        {
            paths.Add(address);
        }
        else
        {
            problems.Add($"{key}: \"{text}\" is not an IP address");
        }
    }

    private static TimeSpan Duration(string? text, string key, List<string> problems, TimeSpan fallback)
    {
        if (text is null)
        {
            return fallback;
        }

        if (DurationParser.TryParse(text, out var duration) && duration > TimeSpan.Zero)
        {
            return duration;
        }

        problems.Add($"{key}: \"{text}\" is not a positive duration such as 500ms or 2s");
        return fallback;
    }

    private static void ReadPsk(string? pskFile, string? pskFromEnvironment, AgentOptions options, List<string> problems)
    {
        byte[] psk;
        string source;
        if (pskFile is not null)
        {
            source = $"agent.pskFile (--psk-file) {pskFile}";
            try
            {
                psk = File.ReadAllBytes(pskFile);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                problems.Add($"{source}: cannot read the file: {ex.Message}");
                return;
            }
        }
        else if (!string.IsNullOrEmpty(pskFromEnvironment))
        {
            source = $"${PskEnvironmentVariable}";
            psk = Encoding.UTF8.GetBytes(pskFromEnvironment);
        }
        else
        {
            problems.Add($"agent.pskFile (--psk-file): required, or set ${PskEnvironmentVariable}; the pre-shared key shared with the relays, at least {TransportKeys.MinPskBytes} bytes");
            return;
        }

        var length = psk.Length;
        while (length > 0 && psk[length - 1] is (byte)'\n' or (byte)'\r')
        {
            length--;
        }

        if (length < TransportKeys.MinPskBytes)
        {
            problems.Add($"{source}: the pre-shared key must be at least {TransportKeys.MinPskBytes} bytes (it has {length})");
            return;
        }

        options.Psk = psk.AsMemory(0, length);
    }
}
