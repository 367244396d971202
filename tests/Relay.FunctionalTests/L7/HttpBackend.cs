using System.Collections.Concurrent;
using System.Net;
using System.Net.WebSockets;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Relay.FunctionalTests.L7;

/// <summary>
/// A real Kestrel HTTP backend on 127.0.0.1:0. By default it answers every request with a small JSON
/// body naming itself and echoing the request body, and echoes WebSocket messages on /ws. Every
/// request is recorded (method, path, the shadow header, body).
/// </summary>
public sealed class HttpBackend : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly Func<HttpContext, HttpBackend, Task>? _handler;
    private int _stopped;

    private HttpBackend(string name, WebApplication app, Func<HttpContext, HttpBackend, Task>? handler)
    {
        Name = name;
        _app = app;
        _handler = handler;
    }

    public string Name { get; }

    public int Port { get; private set; }

    public string Address => $"127.0.0.1:{Port}";

    public ConcurrentQueue<RecordedRequest> Requests { get; } = new();

    public static async Task<HttpBackend> StartAsync(string name, Func<HttpContext, HttpBackend, Task>? handler = null)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0));
        var app = builder.Build();
        var backend = new HttpBackend(name, app, handler);
        app.UseWebSockets();
        app.Run(backend.ServeAsync);
        await app.StartAsync().WaitAsync(TimeSpan.FromSeconds(20));
        backend.Port = new Uri(app.Urls.First()).Port;
        return backend;
    }

    /// <summary>The default answer: 200, JSON naming the backend, the request's method, path and body.</summary>
    public static async Task DefaultAsync(HttpContext context, HttpBackend backend, string body)
    {
        context.Response.Headers["X-Backend"] = backend.Name;
        await context.Response.WriteAsJsonAsync(new { backend = backend.Name, method = context.Request.Method, path = context.Request.Path.Value, body });
    }

    /// <summary>Stops abruptly: open connections are aborted, new ones refused.</summary>
    public async Task KillAsync()
    {
        if (Interlocked.Exchange(ref _stopped, 1) == 0)
        {
            await _app.StopAsync(new CancellationToken(canceled: true)).WaitAsync(TimeSpan.FromSeconds(20));
        }
    }

    public async ValueTask DisposeAsync()
    {
        await KillAsync();
        await _app.DisposeAsync();
    }

    private async Task ServeAsync(HttpContext context)
    {
        if (context.WebSockets.IsWebSocketRequest)
        {
            using var socket = await context.WebSockets.AcceptWebSocketAsync();
            var buffer = new byte[16 * 1024];
            while (true)
            {
                var result = await socket.ReceiveAsync(buffer, context.RequestAborted);
                if (result.MessageType == WebSocketMessageType.Close)
                {
                    await socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "bye", context.RequestAborted);
                    return;
                }

                await socket.SendAsync(buffer.AsMemory(0, result.Count), result.MessageType, result.EndOfMessage, context.RequestAborted);
            }
        }

        using var reader = new StreamReader(context.Request.Body);
        var body = await reader.ReadToEndAsync(context.RequestAborted);
        Requests.Enqueue(new RecordedRequest(context.Request.Method, context.Request.Path.Value ?? "/", context.Request.Headers["X-Relay-Shadow"].ToString(), context.Request.Headers["Idempotency-Key"].ToString(), body));
        if (_handler is not null)
        {
            context.Items["body"] = body;
            await _handler(context, this);
            return;
        }

        await DefaultAsync(context, this, body);
    }
}

public sealed record RecordedRequest(string Method, string Path, string ShadowHeader, string IdempotencyKey, string Body);
