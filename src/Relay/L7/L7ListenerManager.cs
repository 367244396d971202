using System.Collections.Concurrent;
using System.Net;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Abstractions;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.Options;
using Relay.Configuration;

namespace Relay.L7;

/// <summary>
/// One Kestrel server per HTTP route, as <see cref="L4.L4ListenerManager"/> does for TCP routes, so a
/// reload adds, moves or removes one listener while the others carry on. Each server runs a
/// minimal <see cref="IHttpApplication{TContext}"/>: no middleware, just the proxy.
/// </summary>
internal sealed class L7ListenerManager : IAsyncDisposable
{
    private readonly Lazy<L7Proxy> _proxy;
    private readonly IServiceProvider _services;
    private readonly ILoggerFactory _loggerFactory;
    private readonly ILogger _logger;
    private readonly SocketTransportFactory _transport;
    private readonly Dictionary<string, Listener> _listeners = new(StringComparer.Ordinal);
    private readonly List<Task> _retiring = [];
    private readonly SemaphoreSlim _lock = new(1, 1);

    public L7ListenerManager(Lazy<L7Proxy> proxy, TransportTuning tuning, IServiceProvider services, ILoggerFactory loggerFactory)
    {
        _proxy = proxy;
        _services = services;
        _loggerFactory = loggerFactory;
        _logger = loggerFactory.CreateLogger<L7ListenerManager>();
        _transport = new SocketTransportFactory(Options.Create(new SocketTransportOptions
        {
            UnsafePreferInlineScheduling = tuning.InlineScheduling,
            NoDelay = true,
        }), loggerFactory);
    }

    public ConcurrentDictionary<string, L7Route> Routes { get; } = new(StringComparer.Ordinal);

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

    /// <summary>Makes the HTTP listeners match the HTTP routes of <paramref name="routes"/>; one error per route that cannot listen.</summary>
    public async Task<IReadOnlyList<string>> ApplyAsync(IEnumerable<RouteConfig> routes, TimeSpan drainTimeout, CancellationToken cancellationToken)
    {
        var wanted = routes.ToDictionary(r => r.Name, StringComparer.Ordinal);
        var errors = new List<string>();
        await _lock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            foreach (var (name, listener) in _listeners.ToArray())
            {
                if (!wanted.TryGetValue(name, out var route) || !(route.Listen.Equals(listener.Configured) || (route.Listen.Port != 0 && route.Listen.Equals(listener.Bound))))
                {
                    lock (_listeners)
                    {
                        _listeners.Remove(name);
                    }

                    _retiring.Add(RetireAsync(name, listener, drainTimeout));
                }
            }

            foreach (var route in wanted.Values.OrderBy(r => r.Name, StringComparer.Ordinal))
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

                    L7Log.RouteListening(_logger, route.Name, listener.Bound, route.Cluster);
                }
                catch (Exception ex) when (ex is IOException or System.Net.Sockets.SocketException or InvalidOperationException)
                {
                    var inUse = ex.InnerException is System.Net.Sockets.SocketException { SocketErrorCode: System.Net.Sockets.SocketError.AddressAlreadyInUse }
                        || ex is System.Net.Sockets.SocketException { SocketErrorCode: System.Net.Sockets.SocketError.AddressAlreadyInUse }
                        || ex.Message.Contains("address already in use", StringComparison.OrdinalIgnoreCase);
                    var reason = inUse ? $"{route.Listen} is already in use" : $"cannot listen on {route.Listen}: {ex.Message}";
                    L7Log.ListenFailed(_logger, route.Name, route.Listen, reason);
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

    public async Task StopAsync(TimeSpan drainTimeout)
    {
        await _lock.WaitAsync().ConfigureAwait(false);
        try
        {
            KeyValuePair<string, Listener>[] all;
            lock (_listeners)
            {
                all = [.. _listeners];
                _listeners.Clear();
            }

            await Task.WhenAll(all.Select(l => RetireAsync(l.Key, l.Value, drainTimeout)).Concat(_retiring)).ConfigureAwait(false);
            _retiring.Clear();
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
    }

    private async Task<Listener> StartAsync(RouteConfig route, CancellationToken cancellationToken)
    {
        var options = new KestrelServerOptions { ApplicationServices = _services, AddServerHeader = false };
        ListenOptions? listenOptions = null;
        options.Listen(route.Listen, listen =>
        {
            listen.Protocols = HttpProtocols.Http1;
            listenOptions = listen;
        });
        var server = new KestrelServer(Options.Create(options), _transport, _loggerFactory);
        try
        {
            await server.StartAsync(new ProxyApplication(_proxy.Value, this, route.Name), cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            server.Dispose();
            throw;
        }

        return new Listener(server, route.Listen, listenOptions?.IPEndPoint ?? route.Listen);
    }

    private async Task RetireAsync(string name, Listener listener, TimeSpan drainTimeout)
    {
        using var cts = new CancellationTokenSource(drainTimeout);
        try
        {
            await listener.Server.StopAsync(cts.Token).ConfigureAwait(false);
        }
        finally
        {
            listener.Server.Dispose();
            L7Log.RouteStopped(_logger, name, listener.Bound);
        }
    }

    private sealed record Listener(KestrelServer Server, IPEndPoint Configured, IPEndPoint Bound);

    /// <summary>
    /// The whole HTTP application of an L7 listener. Reuses Kestrel's per-connection
    /// <see cref="DefaultHttpContext"/> through <see cref="IHostContextContainer{TContext}"/>, as
    /// ASP.NET Core's own HostingApplication does, so a request allocates no context.
    /// </summary>
    private sealed class ProxyApplication(L7Proxy proxy, L7ListenerManager owner, string routeName) : IHttpApplication<HttpContext>
    {
        public HttpContext CreateContext(IFeatureCollection contextFeatures)
        {
            if (contextFeatures is IHostContextContainer<HttpContext> container)
            {
                if (container.HostContext is DefaultHttpContext reused)
                {
                    reused.Initialize(contextFeatures);
                    return reused;
                }

                var created = new DefaultHttpContext(contextFeatures);
                container.HostContext = created;
                return created;
            }

            return new DefaultHttpContext(contextFeatures);
        }

        public void DisposeContext(HttpContext context, Exception? exception)
        {
            if (context is DefaultHttpContext defaultContext && context.Features is IHostContextContainer<HttpContext>)
            {
                defaultContext.Uninitialize();
            }
        }

        public Task ProcessRequestAsync(HttpContext context)
        {
            if (!owner.Routes.TryGetValue(routeName, out var route))
            {
                context.Response.StatusCode = StatusCodes.Status503ServiceUnavailable;
                return Task.CompletedTask;
            }

            return proxy.HandleAsync(context, route);
        }
    }
}
