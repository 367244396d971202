using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Relay.Configuration;
using Relay.Hosting;

namespace Relay.FunctionalTests.Infrastructure;

/// <summary>A relay hosted in the test process on loopback, with its log captured.</summary>
public sealed class TestRelay : IAsyncDisposable
{
    public const string Token = "test-token-0123456789abcdef";

    private readonly string _tokenFile;

    private TestRelay(RelayApp app, TestLog log, string tokenFile)
    {
        App = app;
        Log = log;
        _tokenFile = tokenFile;
        Http = new HttpClient { BaseAddress = app.AdminAddress, Timeout = TimeSpan.FromSeconds(10) };
    }

    public RelayApp App { get; }

    public TestLog Log { get; }

    public HttpClient Http { get; }

    /// <summary>
    /// Starts a relay from JSON config text; admin goes on 127.0.0.1:0 with <see cref="Token"/>.
    /// <paramref name="beforeStart"/> sees the app after it is created and before it starts (to set test hooks).
    /// </summary>
    public static async Task<TestRelay> StartAsync(string json, string? configPath = null, Action<RelayApp>? beforeStart = null)
    {
        var tokenFile = Path.GetTempFileName();
        await File.WriteAllTextAsync(tokenFile, Token + "\n");
        var result = ConfigLoader.Parse(json);
        Assert.True(result.IsValid, "test config invalid: " + string.Join("; ", result.Errors));
        var config = result.Config! with { Admin = new AdminConfig { Listen = new IPEndPoint(IPAddress.Loopback, 0), TokenFile = tokenFile } };
        var log = new TestLog();
        var app = RelayApp.Create(config, new RelayAppOptions
        {
            ConfigPath = configPath,
            ConfigureLogging = logging =>
            {
                logging.AddProvider(log);
                logging.SetMinimumLevel(LogLevel.Debug);
            },
        });
        try
        {
            beforeStart?.Invoke(app);
            await app.StartAsync().WaitAsync(TimeSpan.FromSeconds(30));
        }
        catch
        {
            await app.DisposeAsync();
            File.Delete(tokenFile);
            throw;
        }

        var relay = new TestRelay(app, log, tokenFile);
        relay.Http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Token);
        return relay;
    }

    public IPEndPoint Route(string name) => App.RouteAddresses[name];

    public async Task<Socket> ConnectAsync(string route)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(Route(route)).WaitAsync(TimeSpan.FromSeconds(10));
        return socket;
    }

    public string Metrics() => Http.GetStringAsync("/metrics").WaitAsync(TimeSpan.FromSeconds(10)).GetAwaiter().GetResult();

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        await App.DisposeAsync();
        File.Delete(_tokenFile);
    }
}

public static class SocketTestExtensions
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(15);

    public static async Task SendAllAsync(this Socket socket, ReadOnlyMemory<byte> data) =>
        await socket.SendAsync(data, SocketFlags.None).AsTask().WaitAsync(s_timeout);

    /// <summary>Reads exactly <paramref name="count"/> bytes, or fewer if the peer closes.</summary>
    public static async Task<byte[]> ReceiveExactlyAsync(this Socket socket, int count)
    {
        var buffer = new byte[count];
        var total = 0;
        while (total < count)
        {
            var read = await socket.ReceiveAsync(buffer.AsMemory(total), SocketFlags.None).AsTask().WaitAsync(s_timeout);
            if (read == 0)
            {
                return buffer[..total];
            }

            total += read;
        }

        return buffer;
    }

    /// <summary>Waits until the peer closes (read returns 0) or resets; returns the bytes seen before.</summary>
    public static async Task<int> ReceiveUntilClosedAsync(this Socket socket, TimeSpan timeout)
    {
        var buffer = new byte[4096];
        var total = 0;
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            while (true)
            {
                var read = await socket.ReceiveAsync(buffer, SocketFlags.None, cts.Token);
                if (read == 0)
                {
                    return total;
                }

                total += read;
            }
        }
        catch (SocketException)
        {
            return total;
        }
    }

    public static async Task<string> ReadLineAsync(this Socket socket)
    {
        var bytes = new List<byte>();
        var one = new byte[1];
        while (true)
        {
            var read = await socket.ReceiveAsync(one.AsMemory(), SocketFlags.None).AsTask().WaitAsync(s_timeout);
            if (read == 0 || one[0] == (byte)'\n')
            {
                return System.Text.Encoding.UTF8.GetString([.. bytes]);
            }

            bytes.Add(one[0]);
        }
    }
}
