using System.Net;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.Options;
using Relay.Configuration;
using Relay.Diagnostics;
using Relay.Transport.Sockets;

namespace Relay.L4;

/// <summary>
/// One Kestrel server per L4 route, each listening on the route's address with the
/// <see cref="L4Handler"/> as its connection delegate. A server per route lets a reload add,
/// move or remove a listener while the others, and every live session, carry on.
/// </summary>
public sealed class L4ListenerManager : IAsyncDisposable
{
    private readonly L4Handler _handler;
    private readonly IServiceProvider _services;
    private readonly ILoggerFactory _loggerFactory;
    private readonly ILogger _logger;
    private readonly IConnectionListenerFactory _transport;
    private readonly SocketTransportFactory _socketTransport;
    private readonly EpollReactorGroup? _reactors;
    private readonly Dictionary<string, RouteListener> _listeners = new(StringComparer.Ordinal);
    private readonly List<Task> _retiring = [];
    private readonly SemaphoreSlim _lock = new(1, 1);

    internal L4ListenerManager(L4Handler handler, TransportTuning tuning, BlockMemoryPoolFactory? poolFactory, IServiceProvider services, ILoggerFactory loggerFactory)
    {
        _handler = handler;
        _services = services;
        _loggerFactory = new ScopelessLoggerFactory(loggerFactory);
        _logger = loggerFactory.CreateLogger<L4ListenerManager>();
        var options = new SocketTransportOptions
        {
            MaxReadBufferSize = tuning.MaxBufferedBytes,
            MaxWriteBufferSize = tuning.MaxBufferedBytes,
            UnsafePreferInlineScheduling = tuning.InlineScheduling,
            WaitForDataBeforeAllocatingBuffer = true,
            NoDelay = true,
        };
        poolFactory?.TryAttach(options, out _);
        _socketTransport = new SocketTransportFactory(Options.Create(options), _loggerFactory);
        if (tuning.Epoll && EpollReactor.IsSupported)
        {
            _reactors = new EpollReactorGroup(tuning.EpollReactors > 0 ? tuning.EpollReactors : Environment.ProcessorCount);
            var pool = (poolFactory ?? new BlockMemoryPoolFactory(tuning.BlockBytes, RelayDefaults.MaxCachedBlocks)).Create();
            _transport = new EpollTransportFactory(_reactors, pool, tuning.MaxBufferedBytes, tuning.InlineScheduling);
            RelayLog.L4Transport(_logger, $"the relay's epoll reactors ({_reactors.Count} thread(s)) for plain routes, Kestrel's socket transport for echoed ones");
        }
        else
        {
            _transport = _socketTransport;
            RelayLog.L4Transport(_logger, tuning.Epoll ? "Kestrel's socket transport (epoll reactors need Linux on x86-64)" : "Kestrel's socket transport (tuning.epoll is false)");
        }
    }

    /// <summary>The epoll reactors the L4 listeners use, or null with Kestrel's socket transport.</summary>
    internal EpollReactorGroup? Reactors => _reactors;

    /// <summary>The address each route is bound to (the real port when the config said 0).</summary>
    public IReadOnlyDictionary<string, IPEndPoint> BoundAddresses
    {
        get
        {
            lock (_listeners)
            {
                return _listeners.ToDictionary(l => l.Key, l => l.Value.Bound);
            }
        }
    }

    /// <summary>
    /// Makes the listeners match <paramref name="config"/>. Returns one error per route that could
    /// not listen; the other routes are applied regardless.
    /// </summary>
    public async Task<IReadOnlyList<string>> ApplyAsync(RelayConfig config, CancellationToken cancellationToken)
    {
        var errors = new List<string>();
        await _lock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            foreach (var (name, listener) in _listeners.ToArray())
            {
                if (!config.Routes.TryGetValue(name, out var route) || !SameListen(route.Listen, listener.Route.Listen, listener.Bound))
                {
                    lock (_listeners)
                    {
                        _listeners.Remove(name);
                    }

                    _retiring.Add(RetireAsync(listener, config.Shutdown.DrainTimeout));
                }
                else
                {
                    listener.Route = route;
                }
            }

            foreach (var route in config.Routes.Values.OrderBy(r => r.Name, StringComparer.Ordinal))
            {
                if (_listeners.ContainsKey(route.Name))
                {
                    continue;
                }

                try
                {
                    var listener = await StartAsync(route, cancellationToken).ConfigureAwait(false);
                    lock (_listeners)
                    {
                        _listeners[route.Name] = listener;
                    }

                    RelayLog.RouteListening(_logger, route.Name, listener.Bound, route.Cluster);
                }
                catch (Exception ex) when (ex is IOException or System.Net.Sockets.SocketException or InvalidOperationException)
                {
                    var reason = ex.InnerException is System.Net.Sockets.SocketException { SocketErrorCode: System.Net.Sockets.SocketError.AddressAlreadyInUse }
                        || ex is System.Net.Sockets.SocketException { SocketErrorCode: System.Net.Sockets.SocketError.AddressAlreadyInUse }
                        || ex.Message.Contains("address already in use", StringComparison.OrdinalIgnoreCase)
                        ? $"{route.Listen} is already in use"
                        : $"cannot listen on {route.Listen}: {ex.Message}";
                    RelayLog.ListenFailed(_logger, route.Name, route.Listen, reason);
                    errors.Add($"routes.{route.Name}.listen: {reason}");
                }
            }
        }
        finally
        {
            _lock.Release();
        }

        return errors;
    }

    /// <summary>Stops accepting on every route, then waits up to <paramref name="drainTimeout"/> for sessions.</summary>
    public async Task StopAsync(TimeSpan drainTimeout)
    {
        await _lock.WaitAsync().ConfigureAwait(false);
        try
        {
            var all = _listeners.Values.ToArray();
            lock (_listeners)
            {
                _listeners.Clear();
            }

            var stops = all.Select(l => RetireAsync(l, drainTimeout)).Concat(_retiring).ToArray();
            await Task.WhenAll(stops).ConfigureAwait(false);
        }
        finally
        {
            _lock.Release();
        }
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync(TimeSpan.Zero).ConfigureAwait(false);
        _lock.Dispose();
        _reactors?.Dispose();
    }

    private static bool SameListen(IPEndPoint wanted, IPEndPoint configured, IPEndPoint bound) =>
        wanted.Equals(configured) || (wanted.Port == 0 ? false : wanted.Equals(bound));

    private async Task<RouteListener> StartAsync(RouteConfig route, CancellationToken cancellationToken)
    {
        var options = new KestrelServerOptions { ApplicationServices = _services, AddServerHeader = false };
        var listener = new RouteListener(route);
        options.Listen(route.Listen, listen =>
        {
            listener.ListenOptions = listen;
            listen.Run(connection => _handler.HandleAsync(connection, listener.Route.Name));
        });
        // An echoed route's sessions run through pipes on the runtime's engine (their upstream leg can
        // move), so their clients stay there too: split over a reactor and the engine, each direction of
        // a session would wake another thread (docs/operations.md, "Tuning"). A reload that turns echo
        // on or off keeps the listener and its transport; both kinds of session work on either.
        var transport = route.Echo is null ? _transport : _socketTransport;
        var server = new KestrelServer(Options.Create(options), transport, _loggerFactory);
        try
        {
            await server.StartAsync(new NoHttpApplication(), cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            server.Dispose();
            throw;
        }

        listener.Server = server;
        listener.Bound = listener.ListenOptions?.IPEndPoint ?? route.Listen;
        return listener;
    }

    private async Task RetireAsync(RouteListener listener, TimeSpan drainTimeout)
    {
        // KestrelServer.StopAsync stops accepting at once, waits for live connections until the token
        // fires, then aborts what is left.
        using var cts = new CancellationTokenSource(drainTimeout);
        try
        {
            await listener.Server!.StopAsync(cts.Token).ConfigureAwait(false);
        }
        finally
        {
            listener.Server!.Dispose();
            RelayLog.RouteStopped(_logger, listener.Route.Name, listener.Bound);
        }
    }

    private sealed class RouteListener(RouteConfig route)
    {
        public RouteConfig Route { get; set; } = route;

        public KestrelServer? Server { get; set; }

        public ListenOptions? ListenOptions { get; set; }

        public IPEndPoint Bound { get; set; } = route.Listen;
    }

    /// <summary>L4 listeners carry no HTTP; Kestrel asks for an application all the same.</summary>
    private sealed class NoHttpApplication : IHttpApplication<object>
    {
        public object CreateContext(IFeatureCollection contextFeatures) => throw new InvalidOperationException("An L4 route received an HTTP request.");

        public void DisposeContext(object context, Exception? exception)
        {
        }

        public Task ProcessRequestAsync(object context) => Task.CompletedTask;
    }
}
