using System.Net;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Relay.Admin;
using Relay.Clusters;
using Relay.Configuration;
using Relay.Diagnostics;
using Relay.Echo.Splice;
using Relay.Health;
using Relay.L4;
using Relay.L7;
using Relay.Prediction;

namespace Relay.Hosting;

/// <summary>
/// The relay process minus its command line: config, runtime state, L4 listeners, health probes,
/// idle sweeping, config reload and the admin API. Tests host it in-process.
/// </summary>
public sealed class RelayApp : IAsyncDisposable
{
    private readonly WebApplication _web;
    private readonly RelayRuntime _runtime;
    private readonly L4Handler _handler;
    private readonly L4ListenerManager _listeners;
    private readonly L7Host _l7;
    private readonly UpstreamConnector _connector;
    private readonly EchoManager _echo;
    private readonly ActiveHealthProber _prober;
    private readonly PredictionService _prediction;
    private readonly AdminToken _token;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stop = new();
    private readonly string? _configPath;
    private readonly (long Length, DateTime Written) _configStamp;
    private readonly List<Task> _background = [];
    private bool _adminStarted;
    private int _stopped;

    private RelayApp(WebApplication web, RelayConfig config, AdminToken token, string? configPath, TimeProvider timeProvider)
    {
        _web = web;
        _token = token;
        _configPath = configPath;

        // Stamped now, with the configuration just handed over: a write that lands before the watcher's
        // first poll is still a change it sees.
        _configStamp = configPath is null ? default : Stamp(configPath);
        var loggerFactory = web.Services.GetRequiredService<ILoggerFactory>();
        _logger = loggerFactory.CreateLogger("Relay");
        Metrics = new RelayMetrics();
        _runtime = new RelayRuntime(config, Metrics, timeProvider, loggerFactory.CreateLogger<RelayRuntime>());
        var poolFactory = new BlockMemoryPoolFactory(config.Tuning.BlockBytes, maxCachedBlocks: RelayDefaults.MaxCachedBlocks);
        if (!poolFactory.TryAttach(new Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets.SocketTransportOptions(), out var problem))
        {
            RelayLog.MemoryPoolFallback(_logger, problem ?? "unknown");
            poolFactory = null;
        }

        PoolFactory = poolFactory;
        _connector = new UpstreamConnector(config.Tuning, poolFactory);
        _echo = new EchoManager(_runtime, _connector, loggerFactory);
        _handler = new L4Handler(_runtime, _connector, loggerFactory.CreateLogger<L4Handler>(), _echo);
        _listeners = new L4ListenerManager(_handler, config.Tuning, poolFactory, web.Services, loggerFactory);
        if (_listeners.Reactors is { } reactors)
        {
            _runtime.ReactorSockets = () => reactors.Registered;
        }
        _prober = new ActiveHealthProber(_runtime, loggerFactory.CreateLogger<ActiveHealthProber>());
        _prediction = new PredictionService(_runtime, new EchoSignals(_echo, _runtime), loggerFactory.CreateLogger<PredictionService>());
        _prober.ProbeCompleted = _prediction.OnProbe;
        _l7 = new L7Host(_runtime, config.Tuning, web.Services, loggerFactory);
        AdminApi.Map(web, _runtime, _listeners, _l7, _echo, _prediction, token, _logger);
    }

    public RelayRuntime Runtime => _runtime;

    public RelayMetrics Metrics { get; }

    public AdminToken Token => _token;

    internal BlockMemoryPoolFactory? PoolFactory { get; }

    internal L4ListenerManager L4Listeners => _listeners;

    /// <summary>The admin API's base address once started, or null when it is disabled.</summary>
    public Uri? AdminAddress { get; private set; }

    public IReadOnlyDictionary<string, IPEndPoint> RouteAddresses => _listeners.BoundAddresses.Concat(_l7.BoundAddresses).ToDictionary(StringComparer.Ordinal);

    public L7Host L7 => _l7;

    public EchoManager Echo => _echo;

    public PredictionService Prediction => _prediction;

    /// <summary>Builds a relay from a validated configuration. Fails with a clear message, never half-built.</summary>
    public static RelayApp Create(RelayConfig config, RelayAppOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        options ??= new RelayAppOptions();
        if (!AdminToken.TryResolve(config.Admin, out var token, out var tokenError))
        {
            throw new RelayStartException([tokenError!]);
        }

        // The empty builder: no appsettings.json, no configuration from ASPNETCORE_/DOTNET_ variables,
        // no host filtering; the relay's own file and flags are its whole configuration. About 1 MiB
        // less at start than the slim builder.
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions { Args = [], ContentRootPath = AppContext.BaseDirectory });
        builder.WebHost.UseKestrelCore();
        builder.Services.AddRoutingCore();
        builder.Logging.ClearProviders();
        if (options.ConfigureLogging is { } configureLogging)
        {
            configureLogging(builder.Logging);
        }
        else
        {
            // Logs go to stderr; stdout carries only the ready lines, which scripts read.
            builder.Logging.AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
            builder.Logging.AddSimpleConsole(o =>
            {
                o.SingleLine = true;
                o.TimestampFormat = "HH:mm:ss.fff ";
            });
            builder.Logging.SetMinimumLevel(options.MinimumLogLevel);
        }

        builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        builder.Logging.AddFilter("Microsoft.Hosting", LogLevel.Warning);
        // YARP's forwarder logs every request at Information; L7 logs its own events (1100-1199).
        builder.Logging.AddFilter("Yarp", LogLevel.Warning);
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            if (config.Admin.Listen is { } admin)
            {
                kestrel.Listen(admin);
            }
        });
        var web = builder.Build();
        return new RelayApp(web, config, token!, options.ConfigPath, options.TimeProvider ?? TimeProvider.System);
    }

    /// <summary>Binds every route and the admin listener; on any failure stops what started and throws.</summary>
    public async Task StartAsync(CancellationToken cancellationToken = default)
    {
        var config = _runtime.Snapshot.Config;
        var echoErrors = _echo.Start(config);
        if (echoErrors.Count > 0)
        {
            throw new RelayStartException(echoErrors);
        }

        var errors = new List<string>(await _listeners.ApplyAsync(L7Host.TcpOnly(config), cancellationToken).ConfigureAwait(false));
        errors.AddRange(await _l7.ApplyAsync(config, cancellationToken).ConfigureAwait(false));
        if (errors.Count == 0 && config.Admin.Listen is not null)
        {
            try
            {
                await _web.StartAsync(cancellationToken).ConfigureAwait(false);
                _adminStarted = true;
                var address = _web.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses.FirstOrDefault();
                AdminAddress = address is null ? null : new Uri(address.Replace("[::]", "127.0.0.1", StringComparison.Ordinal));
            }
            catch (IOException ex)
            {
                errors.Add($"admin.listen: cannot listen on {config.Admin.Listen}: {(ex.Message.Contains("address already in use", StringComparison.OrdinalIgnoreCase) ? "already in use" : ex.Message)}");
            }
        }

        if (errors.Count > 0)
        {
            await _listeners.StopAsync(TimeSpan.Zero).ConfigureAwait(false);
            await _l7.StopAsync(TimeSpan.Zero).ConfigureAwait(false);
            throw new RelayStartException(errors);
        }

        _prober.Start();
        _prediction.Start();
        _l7.Start();
        _background.Add(Task.Run(() => SweepIdleAsync(_stop.Token), CancellationToken.None));
        if (_configPath is not null)
        {
            _background.Add(Task.Run(() => WatchConfigAsync(_configPath, _stop.Token), CancellationToken.None));
        }

        RelayLog.RelayStarted(_logger, config.Routes.Count, config.Clusters.Count, AdminAddress?.ToString() ?? "disabled");
    }

    /// <summary>Applies a new configuration as a reload would. Returns the problems; none means applied.</summary>
    public async Task<IReadOnlyList<string>> ReloadAsync(RelayConfig config, CancellationToken cancellationToken = default)
    {
        var current = _runtime.Snapshot.Config;
        _runtime.Apply(config);
        _echo.Apply(config);
        var errors = await _listeners.ApplyAsync(L7Host.TcpOnly(config), cancellationToken).ConfigureAwait(false);
        var notes = new List<string>(errors);
        notes.AddRange(await _l7.ApplyAsync(config, cancellationToken).ConfigureAwait(false));
        if (!Equals(current.Admin, config.Admin) || !Equals(current.Tuning, config.Tuning) || !Equals(current.Prediction, config.Prediction))
        {
            notes.Add("admin, tuning and prediction changes take effect at the next restart");
        }

        return notes;
    }

    /// <summary>Graceful stop: no new sessions, live ones get up to the drain timeout, then are aborted.</summary>
    public async Task StopAsync(TimeSpan? drainTimeout = null)
    {
        if (Interlocked.Exchange(ref _stopped, 1) == 1)
        {
            return;
        }

        var drain = drainTimeout ?? _runtime.Snapshot.Config.Shutdown.DrainTimeout;
        _handler.BeginShutdown();
        RelayLog.DrainStarted(_logger, drain.TotalSeconds, _runtime.Sessions.Count);
        await Task.WhenAll(_listeners.StopAsync(drain), _l7.StopAsync(drain)).ConfigureAwait(false);
        RelayLog.DrainFinished(_logger, _runtime.Sessions.Count);
        await _stop.CancelAsync().ConfigureAwait(false);
        foreach (var task in _background)
        {
            try
            {
                await task.ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                // Background loops end by cancellation.
            }
        }

        await _prober.DisposeAsync().ConfigureAwait(false);
        await _prediction.DisposeAsync().ConfigureAwait(false);
        await _echo.DisposeAsync().ConfigureAwait(false);
        if (_adminStarted)
        {
            await _web.StopAsync(CancellationToken.None).ConfigureAwait(false);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync(TimeSpan.Zero).ConfigureAwait(false);
        await _web.DisposeAsync().ConfigureAwait(false);
        await _listeners.DisposeAsync().ConfigureAwait(false);
        await _l7.DisposeAsync().ConfigureAwait(false);
        _connector.Dispose();
        _token.DeleteGenerated();
        _stop.Dispose();
    }

    private async Task SweepIdleAsync(CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            var shortest = _runtime.Snapshot.Config.Routes.Values.Select(r => r.IdleTimeout).Where(t => t > TimeSpan.Zero).DefaultIfEmpty(TimeSpan.FromSeconds(4)).Min();
            var tick = TimeSpan.FromMilliseconds(Math.Clamp(shortest.TotalMilliseconds / 4, 50, 1000));
            await Task.Delay(tick, _runtime.TimeProvider, cancellationToken).ConfigureAwait(false);
            _handler.SweepIdle();
        }
    }

    private async Task WatchConfigAsync(string path, CancellationToken cancellationToken)
    {
        // Polling the file's size and time is simpler and sturdier than FileSystemWatcher, which misses
        // the rename-over that editors and config management use; one stat a second costs nothing.
        var last = _configStamp;
        while (!cancellationToken.IsCancellationRequested)
        {
            await Task.Delay(TimeSpan.FromSeconds(1), _runtime.TimeProvider, cancellationToken).ConfigureAwait(false);
            var stamp = Stamp(path);
            if (stamp == last)
            {
                continue;
            }

            // Let a writer finish before reading.
            await Task.Delay(RelayDefaults.ReloadDebounce, _runtime.TimeProvider, cancellationToken).ConfigureAwait(false);
            last = Stamp(path);
            try
            {
                await ReloadFromFileAsync(path, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                // A reload that fails half-way must not end the watcher: the next edit gets its chance.
                Metrics.ConfigReloads.WithLabels("rejected").Inc();
                RelayLog.ConfigReloadRejected(_logger, path, "\n  " + ex.GetType().Name + ": " + ex.Message);
            }
        }
    }

    private async Task ReloadFromFileAsync(string path, CancellationToken cancellationToken)
    {
        var result = ConfigLoader.LoadFile(path);
        if (!result.IsValid)
        {
            Metrics.ConfigReloads.WithLabels("rejected").Inc();
            RelayLog.ConfigReloadRejected(_logger, path, string.Concat(result.Errors.Select(e => "\n  " + e)));
            return;
        }

        var notes = await ReloadAsync(result.Config!, cancellationToken).ConfigureAwait(false);
        Metrics.ConfigReloads.WithLabels(notes.Any(n => n.StartsWith("routes.", StringComparison.Ordinal)) ? "partial" : "applied").Inc();
        RelayLog.ConfigReloaded(_logger, path, result.Config!.Routes.Count, result.Config.Clusters.Count);
        foreach (var note in notes)
        {
            RelayLog.ConfigReloadNote(_logger, path, note);
        }
    }

    private static (long, DateTime) Stamp(string path)
    {
        try
        {
            var info = new FileInfo(path);
            return info.Exists ? (info.Length, info.LastWriteTimeUtc) : (-1, default);
        }
        catch (IOException)
        {
            return (-1, default);
        }
    }
}

public sealed class RelayAppOptions
{
    public string? ConfigPath { get; init; }

    public TimeProvider? TimeProvider { get; init; }

    public LogLevel MinimumLogLevel { get; init; } = LogLevel.Information;

    public Action<ILoggingBuilder>? ConfigureLogging { get; init; }
}

/// <summary>The relay could not start; every reason is listed.</summary>
public sealed class RelayStartException(IReadOnlyList<string> errors) : Exception("relay could not start:\n  " + string.Join("\n  ", errors))
{
    public IReadOnlyList<string> Errors { get; } = errors;
}
