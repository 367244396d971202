using System.Globalization;
using System.Net;

namespace Relay.LoadGen;

internal enum Mode
{
    RequestResponse,
    Stream,
    Idle,
    Serve,
}

internal enum StreamDirection
{
    /// <summary>Send to the target and read back what it echoes (default; works against an echo server).</summary>
    Both,

    /// <summary>Only send (the target must discard: <c>--serve ADDR --serve-mode sink</c>).</summary>
    Up,

    /// <summary>Only receive (the target must send: <c>--serve ADDR --serve-mode source</c>).</summary>
    Down,
}

internal enum ServeMode
{
    Echo,
    Sink,
    Source,
}

/// <summary>Command-line options. Parsed once; every value is checked and every problem is reported.</summary>
internal sealed class LoadGenOptions
{
    public const int DefaultRrSize = 64;
    public const int DefaultStreamSize = 64 * 1024;
    public const double DefaultDurationSeconds = 10;
    public const double DefaultServeDurationSeconds = 3600;

    public Mode Mode { get; private set; }

    public IPEndPoint? Target { get; private set; }

    public IPEndPoint? ServeAddress { get; private set; }

    public ServeMode ServeMode { get; private set; } = ServeMode.Echo;

    public int Sessions { get; private set; }

    /// <summary>rr: request (= response) size; stream: write/read size; idle: optional message size (0 = none).</summary>
    public int Size { get; private set; }

    /// <summary>rr: requests in flight per session (sent back to back, then all responses read).</summary>
    public int Depth { get; private set; } = 1;

    /// <summary>Measured time, after warm-up (rr, stream); hold time after all connections are open (idle); lifetime (serve, 0 = until signalled).</summary>
    public double DurationSeconds { get; private set; }

    /// <summary>rr: total requests to send; stream: total bytes to move; 0 = bounded by duration only.</summary>
    public long Count { get; private set; }

    public double WarmupSeconds { get; private set; }

    public StreamDirection Direction { get; private set; } = StreamDirection.Both;

    /// <summary>stream: bytes per second each session sends at most (0: as fast as it can).</summary>
    public long RateBytesPerSecond { get; private set; }

    /// <summary>stream: send random (incompressible) bytes instead of 'x' repeated.</summary>
    public bool RandomPayload { get; private set; }

    public double ConnectTimeoutSeconds { get; private set; } = 5;

    public int ConnectConcurrency { get; private set; } = 64;

    public bool Verify { get; private set; } = true;

    public bool AllowRemote { get; private set; }

    public bool ShowHelp { get; private set; }

    public const string Usage = """
        relay-loadgen: end-to-end load generator for Relay (and any TCP echo/sink/source server).

        Usage:
          relay-loadgen rr     --target HOST:PORT [--sessions N] [--size BYTES] [--depth N]
                               [--duration S] [--count N] [--warmup S] [--no-verify]
          relay-loadgen stream --target HOST:PORT [--sessions N] [--size BYTES]
                               [--direction both|up|down] [--rate BYTES] [--payload x|random] [--duration S] [--count BYTES] [--warmup S]
          relay-loadgen idle   --target HOST:PORT [--sessions N] [--size BYTES] [--duration S]
          relay-loadgen --serve HOST:PORT [--serve-mode echo|sink|source] [--duration S]

        Modes:
          rr       each session sends a SIZE-byte request and waits for the whole SIZE-byte response
                   (an echo server answers); per-request latency goes into an HdrHistogram.
                   With --depth N a session sends N requests back to back, then reads N responses.
          stream   each session moves bytes as fast as it can; reports Gbit/s. Direction 'both'
                   sends and reads the echo (counts bytes received), 'up' only sends (target
                   must discard), 'down' only reads (target must send).
          idle     opens N connections (at most --connect-concurrency at a time), optionally sends
                   one SIZE-byte message on each and reads its echo, prints
                   'ready: OPEN of N connections open' and holds them for --duration seconds;
                   reports how many were still open at the end.
          --serve  runs a backend on HOST:PORT: echo (default), sink (read and discard) or source
                   (send without end). Runs for --duration seconds (default 3600, 0 = until
                   SIGINT/SIGTERM).

        Options:
          --target HOST:PORT          address to load (IPv4 or [IPv6]:port)
          --sessions N                concurrent connections (rr 16, stream 4, idle 1000)
          --size BYTES                rr 64, stream 65536, idle 0 (no message); K/M suffixes ok
          --depth N                   rr requests in flight per session (default 1)
          --duration S                measured seconds (default 10; with --count default 300)
          --count N                   rr: total requests; stream: total bytes (K/M/G suffixes)
          --warmup S                  seconds run before measuring (rr/stream default 1)
          --direction D               stream: both (default), up, down
          --rate BYTES                stream: at most BYTES per second sent per session (K/M/G suffixes;
                                      default: as fast as it can)
          --payload P                 stream: x (default, 'x' repeated: compresses to nearly nothing) or
                                      random (incompressible, e.g. for echo, whose batches are LZ4-compressed)
          --connect-timeout S         per connection (default 5)
          --connect-concurrency N     connects in flight at once (default 64)
          --no-verify                 rr: do not check that each response equals its request
          --allow-remote              allow a target outside loopback (refused by default)
          -h, --help                  this text

        Output: one JSON line (starts with '{') and one human line on stdout; progress on stderr.
        Exit code: 0 ok, 1 the run had errors (or nothing completed), 2 bad command line.
        """;

    /// <summary>Parses <paramref name="args"/>; returns null and fills <paramref name="errors"/> when any flag is bad.</summary>
    public static LoadGenOptions? Parse(string[] args, List<string> errors)
    {
        var o = new LoadGenOptions();
        Mode? mode = null;
        string? sessions = null, size = null, duration = null, warmup = null, count = null;

        for (var i = 0; i < args.Length; i++)
        {
            var arg = args[i];
            string? Value()
            {
                if (i + 1 >= args.Length || (args[i + 1].StartsWith("--", StringComparison.Ordinal) && args[i + 1].Length > 2))
                {
                    errors.Add($"{arg} needs a value");
                    return null;
                }

                return args[++i];
            }

            switch (arg)
            {
                case "-h":
                case "--help":
                    o.ShowHelp = true;
                    return o;
                case "rr":
                case "stream":
                case "idle":
                    if (mode is not null)
                    {
                        errors.Add($"more than one mode given ('{arg}' after '{ModeName(mode.Value)}')");
                    }

                    mode = arg switch { "rr" => Mode.RequestResponse, "stream" => Mode.Stream, _ => Mode.Idle };
                    break;
                case "--serve":
                    if (mode is not null)
                    {
                        errors.Add($"--serve cannot be combined with mode '{ModeName(mode.Value)}'");
                    }

                    mode = Mode.Serve;
                    o.ServeAddress = ParseEndPoint(arg, Value(), errors);
                    break;
                case "--serve-mode":
                    switch (Value())
                    {
                        case "echo": o.ServeMode = ServeMode.Echo; break;
                        case "sink": o.ServeMode = ServeMode.Sink; break;
                        case "source": o.ServeMode = ServeMode.Source; break;
                        case null: break;
                        case var v: errors.Add($"--serve-mode: '{v}' is not one of echo, sink, source"); break;
                    }

                    break;
                case "--target":
                    o.Target = ParseEndPoint(arg, Value(), errors);
                    break;
                case "--sessions":
                    sessions = Value();
                    break;
                case "--size":
                    size = Value();
                    break;
                case "--depth":
                    o.Depth = (int)ParseSize(arg, Value(), 1, 1024, errors);
                    break;
                case "--duration":
                    duration = Value();
                    break;
                case "--count":
                    count = Value();
                    break;
                case "--warmup":
                    warmup = Value();
                    break;
                case "--direction":
                    switch (Value())
                    {
                        case "both": o.Direction = StreamDirection.Both; break;
                        case "up": o.Direction = StreamDirection.Up; break;
                        case "down": o.Direction = StreamDirection.Down; break;
                        case null: break;
                        case var v: errors.Add($"--direction: '{v}' is not one of both, up, down"); break;
                    }

                    break;
                case "--payload":
                    switch (Value())
                    {
                        case "x": o.RandomPayload = false; break;
                        case "random": o.RandomPayload = true; break;
                        case null: break;
                        case var v: errors.Add($"--payload: '{v}' is not one of x, random"); break;
                    }

                    break;
                case "--rate":
                    o.RateBytesPerSecond = ParseSize(arg, Value(), 1, 1L << 40, errors);
                    break;
                case "--connect-timeout":
                    o.ConnectTimeoutSeconds = ParseSeconds(arg, Value(), 0.001, 600, errors);
                    break;
                case "--connect-concurrency":
                    o.ConnectConcurrency = (int)ParseSize(arg, Value(), 1, 10_000, errors);
                    break;
                case "--no-verify":
                    o.Verify = false;
                    break;
                case "--allow-remote":
                    o.AllowRemote = true;
                    break;
                default:
                    errors.Add($"unknown argument '{arg}' (see --help)");
                    break;
            }
        }

        if (mode is null)
        {
            errors.Add("no mode given: use rr, stream, idle or --serve ADDR (see --help)");
            return null;
        }

        o.Mode = mode.Value;
        var isServe = o.Mode == Mode.Serve;
        if (isServe && o.Target is not null)
        {
            errors.Add("--target is not used with --serve");
        }

        if (!isServe && o.Target is null && !errors.Exists(e => e.StartsWith("--target", StringComparison.Ordinal)))
        {
            errors.Add($"{ModeName(o.Mode)} needs --target HOST:PORT");
        }

        var listenOrTarget = isServe ? o.ServeAddress : o.Target;
        if (listenOrTarget is not null && !o.AllowRemote && !IPAddress.IsLoopback(listenOrTarget.Address))
        {
            errors.Add($"{listenOrTarget} is not a loopback address; pass --allow-remote if you really mean it");
        }

        o.Sessions = sessions is null
            ? o.Mode switch { Mode.RequestResponse => 16, Mode.Stream => 4, _ => 1000 }
            : (int)ParseSize("--sessions", sessions, 1, 100_000, errors);
        o.Size = size is null
            ? o.Mode switch { Mode.RequestResponse => DefaultRrSize, Mode.Stream => DefaultStreamSize, _ => 0 }
            : (int)ParseSize("--size", size, o.Mode == Mode.Idle ? 0 : 1, 16 * 1024 * 1024, errors);

        if (count is not null)
        {
            if (o.Mode is Mode.Idle or Mode.Serve)
            {
                errors.Add($"--count is not used by {ModeName(o.Mode)} (it is bounded by --duration)");
            }
            else
            {
                o.Count = ParseSize("--count", count, 1, long.MaxValue / 2, errors);
            }
        }

        o.DurationSeconds = duration is not null
            ? ParseSeconds("--duration", duration, isServe ? 0 : 0.001, 86_400, errors)
            : isServe ? DefaultServeDurationSeconds : o.Count > 0 ? 300 : DefaultDurationSeconds;
        o.WarmupSeconds = warmup is not null
            ? ParseSeconds("--warmup", warmup, 0, 3600, errors)
            : o.Mode is Mode.RequestResponse or Mode.Stream && o.Count == 0 ? 1 : 0;

        if (o.Mode != Mode.Serve && o.ServeMode != ServeMode.Echo)
        {
            errors.Add("--serve-mode is only used with --serve");
        }

        if (o.Mode != Mode.RequestResponse && o.Depth != 1)
        {
            errors.Add("--depth is only used by rr");
        }

        if (o.Mode != Mode.Stream && o.Direction != StreamDirection.Both)
        {
            errors.Add("--direction is only used by stream");
        }

        if (o.Mode != Mode.Stream && o.RateBytesPerSecond != 0)
        {
            errors.Add("--rate is only used by stream");
        }

        if (o.Mode != Mode.Stream && o.RandomPayload)
        {
            errors.Add("--payload is only used by stream");
        }

        if (o.Mode == Mode.RequestResponse && (long)o.Size * o.Depth > 64L * 1024 * 1024)
        {
            errors.Add("--size x --depth must stay within 64 MiB");
        }

        return errors.Count == 0 ? o : null;
    }

    public static string ModeName(Mode mode) => mode switch
    {
        Mode.RequestResponse => "rr",
        Mode.Stream => "stream",
        Mode.Idle => "idle",
        _ => "serve",
    };

    private static IPEndPoint? ParseEndPoint(string flag, string? value, List<string> errors)
    {
        if (value is null)
        {
            return null;
        }

        if (!IPEndPoint.TryParse(value, out var ep) || ep.Port == 0 || !value.Contains(':', StringComparison.Ordinal))
        {
            errors.Add($"{flag}: '{value}' is not HOST:PORT with a numeric IP address and a port 1-65535 (e.g. 127.0.0.1:9000 or [::1]:9000)");
            return null;
        }

        return ep;
    }

    private static long ParseSize(string flag, string? value, long min, long max, List<string> errors)
    {
        if (value is null)
        {
            return min;
        }

        var text = value.Trim();
        long multiplier = 1;
        if (text.Length > 1)
        {
            multiplier = char.ToUpperInvariant(text[^1]) switch
            {
                'K' => 1024,
                'M' => 1024 * 1024,
                'G' => 1024L * 1024 * 1024,
                _ => 1,
            };
            if (multiplier != 1)
            {
                text = text[..^1];
            }
        }

        if (!long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var n) || n > max / multiplier)
        {
            errors.Add($"{flag}: '{value}' is not a whole number between {min} and {max}");
            return min;
        }

        n *= multiplier;
        if (n < min || n > max)
        {
            errors.Add($"{flag}: {n} is out of range {min}..{max}");
            return min;
        }

        return n;
    }

    private static double ParseSeconds(string flag, string? value, double min, double max, List<string> errors)
    {
        if (value is null)
        {
            return min;
        }

        var text = value.EndsWith('s') ? value[..^1] : value;
        if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var s) || double.IsNaN(s) || s < min || s > max)
        {
            errors.Add($"{flag}: '{value}' is not a number of seconds between {min} and {max}");
            return min;
        }

        return s;
    }
}
