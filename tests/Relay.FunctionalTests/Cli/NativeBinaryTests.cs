using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Relay.FunctionalTests.Echo;
using Relay.FunctionalTests.Infrastructure;
using Relay.FunctionalTests.L7;

namespace Relay.FunctionalTests.Cli;

/// <summary>
/// The relay as operators get it: the binary `./run-relay.sh publish` makes (Native AOT where clang
/// is installed), run as separate processes for the relay, two agents and two sample servers. The
/// other functional tests run the same code in process under the JIT; these catch what only the
/// published binary can get wrong (trimmed code, metadata the JSON writer needs, the YARP forwarder).
/// </summary>
[Collection(EchoTests.Name)]
public sealed class NativeBinaryTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    /// <summary>The published relay: $RELAY_BIN (set by ./run-relay.sh test), else artifacts/relay/relay.</summary>
    private static string? PublishedRelay()
    {
        if (Environment.GetEnvironmentVariable("RELAY_BIN") is { Length: > 0 } fromEnvironment && File.Exists(fromEnvironment))
        {
            return fromEnvironment;
        }

        var candidate = Path.Combine(CommandLineTests.FindRepositoryRoot(), "artifacts", "relay", "relay");
        return File.Exists(candidate) ? candidate : null;
    }

    [Fact]
    public async Task ThePublishedRelay_EchoesAndMovesATcpSession_ProxiesHttpAndWebSockets_AndAnswersEveryAdminCall()
    {
        var relayPath = PublishedRelay();
        if (relayPath is null)
        {
            Assert.Skip("no published relay: ./run-relay.sh test (or ./run-relay.sh publish) makes artifacts/relay/relay");
        }

        var work = Directory.CreateTempSubdirectory("relay-native-");
        var processes = new List<ExternalProcess>();
        var sockets = new List<Socket>();
        var servers = new List<BackendProcess>();
        await using var web = await HttpBackend.StartAsync("w1");
        await using var shadow = await HttpBackend.StartAsync("sh");
        try
        {
            var psk = Path.Combine(work.FullName, "echo.psk");
            await File.WriteAllTextAsync(psk, Convert.ToHexString(RandomNumberGenerator.GetBytes(32)));
            var tokenFile = Path.Combine(work.FullName, "admin.token");
            var token = Convert.ToHexString(RandomNumberGenerator.GetBytes(16));
            await File.WriteAllTextAsync(tokenFile, token + "\n");

            // Two sample servers and an agent beside each, all the published binary.
            var agents = new List<int>();
            for (var i = 0; i < 2; i++)
            {
                var server = await BackendProcess.StartSampleServerAsync($"s{i}", relayPath);
                servers.Add(server);
                var address = server.EndPoint;
                var control = BackendProcess.FreeTcpPort();
                agents.Add(control);
                processes.Add(ExternalProcess.StartLogged(relayPath, Path.Combine(work.FullName, $"agent-{i}.log"), "agent", "--id", $"agent-{i}", "--control", $"127.0.0.1:{control}", "--backend", address.ToString(), "--path", "127.0.0.1", "--psk-file", psk));
            }

            var (tcpPort, httpPort, adminPort) = (BackendProcess.FreeTcpPort(), BackendProcess.FreeTcpPort(), BackendProcess.FreeTcpPort());
            var config = Path.Combine(work.FullName, "relay.json");
            await File.WriteAllTextAsync(config, $$"""
                {
                  "admin": { "listen": "127.0.0.1:{{adminPort}}", "tokenFile": {{JsonSerializer.Serialize(tokenFile)}} },
                  "echo": { "pskFile": {{JsonSerializer.Serialize(psk)}}, "paths": ["127.0.0.1", "127.0.0.1"] },
                  "routes": {
                    "game": { "listen": "127.0.0.1:{{tcpPort}}", "cluster": "game",
                              "echo": { "codec": "lines", "shadows": 1, "interval": "2ms", "stateScope": "connection" } },
                    "web": { "protocol": "http", "listen": "127.0.0.1:{{httpPort}}", "cluster": "web",
                             "affinity": { "mode": "cookie" }, "mirror": { "shadows": ["sh"] } }
                  },
                  "clusters": {
                    "game": { "healthCheck": { "active": { "interval": "300ms", "timeout": "200ms" } }, "endpoints": {
                      "a": { "address": "{{servers[0].Address}}", "agent": "127.0.0.1:{{agents[0]}}", "zone": "z0" },
                      "b": { "address": "{{servers[1].Address}}", "agent": "127.0.0.1:{{agents[1]}}", "zone": "z1" } } },
                    "web": { "endpoints": { "w1": { "address": "{{web.Address}}" } } },
                    "s": { "endpoints": { "sh": { "address": "{{shadow.Address}}" } } }
                  }
                }
                """);
            var relayLog = Path.Combine(work.FullName, "relay.log");
            var relay = ExternalProcess.StartLogged(relayPath, relayLog, "--config", config);
            processes.Add(relay);

            using var admin = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{adminPort}"), Timeout = Timeout };
            admin.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
            await WaitUntilAsync(async () => (await TryGetAsync(admin, "/readyz")) == HttpStatusCode.OK, "the relay is ready", relay, relayLog);
            await WaitUntilAsync(async () => (await admin.GetJsonAsync("/api/endpoints")).RootElement.EnumerateArray().Count(e => e.TryGetProperty("agent", out var a) && a.ValueKind == JsonValueKind.Object && a.GetProperty("connected").GetBoolean()) == 2, "both agents are connected", relay, relayLog);

            // L4 with echo: a scripted game session, moved to its shadow halfway, identical bytes.
            var client = new ScriptedClient(4242, 20);
            var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            sockets.Add(socket);
            await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, tcpPort));
            await client.RunAsync(socket, 0, 10);
            var sessionId = (await admin.GetJsonAsync("/api/sessions")).RootElement.EnumerateArray().Single().GetProperty("id").GetInt64();
            await WaitUntilAsync(
                async () => (await admin.GetJsonAsync($"/api/sessions/{sessionId}")).RootElement.GetProperty("echo").GetProperty("shadows").EnumerateArray().Any(s => s.GetProperty("state").GetString() == "Ready"),
                "the session's shadow is Ready",
                relay,
                relayLog);
            using (var migrated = await admin.SendAsync(HttpMethod.Post, $"/api/sessions/{sessionId}/migrate", HttpStatusCode.OK))
            {
                Assert.True(migrated.RootElement.GetProperty("moved").GetBoolean(), migrated.RootElement.ToString());
            }

            await client.RunAsync(socket, 10, 20);
            var expected = await client.ReferenceAsync(servers[0].EndPoint);
            Assert.True(expected.AsSpan().SequenceEqual(client.Received), "the moved session's bytes differ from a run without the move");
            using (var session = await admin.GetJsonAsync($"/api/sessions/{sessionId}"))
            {
                var splice = session.RootElement.GetProperty("echo").GetProperty("splices")[0];
                Assert.Equal(("migrate", "spliced"), (splice.GetProperty("trigger").GetString(), splice.GetProperty("result").GetString()));
            }

            // L7: a request through YARP, mirrored to the shadow; a WebSocket carried after its upgrade.
            using (var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{httpPort}"), Timeout = Timeout })
            {
                using var response = await http.GetAsync("/hello");
                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
                Assert.Equal("w1", response.Headers.GetValues("X-Backend").Single());
            }

            await WaitUntilAsync(() => Task.FromResult(shadow.Requests.Count == 1), "the mirrored copy reaches the shadow", relay, relayLog);
            using (var ws = new ClientWebSocket())
            {
                await ws.ConnectAsync(new Uri($"ws://127.0.0.1:{httpPort}/ws"), CancellationToken.None).WaitAsync(Timeout);
                await ws.SendAsync("ping through the relay"u8.ToArray(), WebSocketMessageType.Text, true, CancellationToken.None).WaitAsync(Timeout);
                var buffer = new byte[256];
                var received = await ws.ReceiveAsync(buffer, CancellationToken.None).WaitAsync(Timeout);
                Assert.Equal("ping through the relay", Encoding.UTF8.GetString(buffer, 0, received.Count));
            }

            // Every admin call answers with the JSON its docs describe.
            foreach (var (path, status, key) in new[]
            {
                ("/api/routes", HttpStatusCode.OK, "listen"),
                ("/api/endpoints/a", HttpStatusCode.OK, "agent"),
                ("/api/l7/routes", HttpStatusCode.OK, "mirror"),
                ("/api/l7/routes/web", HttpStatusCode.OK, "affinity"),
                ("/api/l7/sessions", HttpStatusCode.OK, "key"),
                ("/api/echo-policies", HttpStatusCode.OK, "policy"),
                ("/api/echo-policies/game", HttpStatusCode.OK, "policy"),
                ("/api/echo-policies/game/estimate", HttpStatusCode.OK, "hosts"),
                ("/api/recommendations", HttpStatusCode.OK, "counters"),
                ("/api/scaling", HttpStatusCode.Conflict, "error"),
                ("/api/sessions/999999", HttpStatusCode.NotFound, "error"),
            })
            {
                using var answer = await admin.SendAsync(HttpMethod.Get, path, status);
                var element = answer.RootElement.ValueKind == JsonValueKind.Array ? answer.RootElement.EnumerateArray().First() : answer.RootElement;
                Assert.True(element.TryGetProperty(key, out _), $"{path}: no \"{key}\" in {answer.RootElement}");
            }

            using (var bad = await admin.SendAsync(HttpMethod.Put, "/api/echo-policies/game", HttpStatusCode.BadRequest, """{ "shadows": "two" }"""))
            {
                Assert.Contains(bad.RootElement.GetProperty("errors").EnumerateArray(), e => e.GetString()!.StartsWith("policy.shadows:", StringComparison.Ordinal));
            }

            using (var drained = await admin.SendAsync(HttpMethod.Post, "/api/endpoints/b/drain", HttpStatusCode.OK))
            {
                Assert.True(drained.RootElement.GetProperty("endpoint").GetProperty("draining").GetBoolean());
            }

            var metrics = await admin.GetStringAsync("/metrics");
            foreach (var metric in new[] { "relay_sessions_active", "relay_splices_total", "relay_http_requests_total", "process_working_set_bytes" })
            {
                Assert.Contains(metric, metrics, StringComparison.Ordinal);
            }

            // SIGTERM: the relay drains and exits cleanly once the client leaves.
            socket.Dispose();
            Assert.Equal(0, CommandLineTests.Kill(relay.Id));
            Assert.True(relay.WaitForExit(20_000), "the relay did not exit after SIGTERM");
            Assert.Equal(0, relay.ExitCode);
        }
        finally
        {
            foreach (var socket in sockets)
            {
                socket.Dispose();
            }

            foreach (var process in processes)
            {
                process.Dispose();
            }

            foreach (var server in servers)
            {
                server.Dispose();
            }

            work.Delete(recursive: true);
        }
    }

    private static async Task<HttpStatusCode?> TryGetAsync(HttpClient admin, string path)
    {
        try
        {
            using var response = await admin.GetAsync(path);
            return response.StatusCode;
        }
        catch (HttpRequestException)
        {
            return null;
        }
    }

    private static async Task WaitUntilAsync(Func<Task<bool>> condition, string what, ExternalProcess relay, string relayLog)
    {
        var deadline = DateTime.UtcNow + Timeout;
        while (!await condition())
        {
            if (relay.HasExited || DateTime.UtcNow > deadline)
            {
                Assert.Fail($"timed out waiting until {what} (relay {(relay.HasExited ? $"exited with {relay.ExitCode}" : "running")}); its log:\n{await ReadSharedAsync(relayLog)}");
            }

            await Task.Delay(50);
        }
    }

    private static async Task<string> ReadSharedAsync(string path)
    {
        await using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        using var reader = new StreamReader(stream);
        return await reader.ReadToEndAsync();
    }
}
