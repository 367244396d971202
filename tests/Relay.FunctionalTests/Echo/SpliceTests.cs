using System.Net.Sockets;
using System.Text;
using Relay.Echo;
using Relay.Echo.Splice;
using Relay.FunctionalTests.Infrastructure;
using Relay.Transport.Sockets;

namespace Relay.FunctionalTests.Echo;

/// <summary>
/// Issue 5's acceptance on real sockets: sample-server processes (killed with SIGKILL), agents
/// beside them, the relay in front, clients that check every byte against a run without failure.
/// </summary>
[Collection(EchoTests.Name)]
public sealed class SpliceTests
{
    private const string LinesPolicy = """{ "codec": "lines", "shadows": SHADOWS, "interval": "2ms", "ackTimeout": "3s" }""";

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public async Task KillingThePrimaryMidStreamLosesNoSessionAndNoByte(int shadows)
    {
        var backends = await BackendProcess.StartSampleServersAsync(3);

        await using var bed = await EchoTestbed.StartAsync(backends, LinesPolicy.Replace("SHADOWS", shadows.ToString(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal));
        const int Clients = 12;
        const int Bursts = 120;
        var clients = Enumerable.Range(0, Clients).Select(i => new ScriptedClient(1000 + i, Bursts)).ToList();
        var sockets = new List<Socket>();
        try
        {
            foreach (var client in clients)
            {
                var socket = await bed.Relay.ConnectAsync("svc");
                sockets.Add(socket);
                await client.RunAsync(socket, 0, 5);
            }

            await bed.WaitUntilAsync(() => bed.Relay.App.Echo.Sessions.Count() == Clients && bed.AllShadowsReady(shadows), $"every session has {shadows} Ready shadow(s)");

            // Under load: every client keeps sending while the busiest endpoint's process is killed.
            var victim = bed.Relay.App.Echo.Sessions.GroupBy(s => s.Endpoint.Id).OrderByDescending(g => g.Count()).First().Key;
            var onVictim = bed.Relay.App.Echo.Sessions.Count(s => s.Endpoint.Id == victim);
            var runs = clients.Select((c, i) => c.RunAsync(sockets[i], 5, Bursts, TimeSpan.FromMilliseconds(3))).ToList();
            await bed.WaitUntilAsync(() => clients.All(c => c.Completed >= 30), "every client is 30 bursts in");
            backends[victim[0] - 'a'].Kill();
            await Task.WhenAll(runs).WaitAsync(TimeSpan.FromSeconds(90));

            var reference = backends.First(b => !b.HasExited).EndPoint;
            for (var i = 0; i < Clients; i++)
            {
                var expected = await clients[i].ReferenceAsync(reference);
                Assert.True(expected.AsSpan().SequenceEqual(clients[i].Received), $"client {i}: its bytes differ from a run without the failure\nexpected tail: {Tail(expected)}\nreceived tail: {Tail(clients[i].Received)}");
            }

            Assert.DoesNotContain(bed.Relay.App.Echo.Sessions, s => s.Endpoint.Id == victim);
            var metrics = bed.Relay.Metrics();
            Assert.True(SumMetric(metrics, "relay_splices_total", "result=\"spliced\"") >= onVictim, metrics);
            Assert.Equal(0, SumMetric(metrics, "relay_echo_sessions_lost_total", ""));
            Assert.True(bed.Relay.Log.Has("Spliced"));
        }
        finally
        {
            foreach (var socket in sockets)
            {
                socket.Dispose();
            }
        }
    }

    [Fact]
    public async Task DrainingAnEndpointMovesAllItsLiveSessions()
    {
        var backends = await BackendProcess.StartSampleServersAsync(2);
        await using var bed = await EchoTestbed.StartAsync(backends, LinesPolicy.Replace("SHADOWS", "1", StringComparison.Ordinal));
        const int Clients = 200;
        var clients = Enumerable.Range(0, Clients).Select(i => new ScriptedClient(5000 + i, 8)).ToList();
        var sockets = new Socket[Clients];
        try
        {
            await Parallel.ForEachAsync(Enumerable.Range(0, Clients), new ParallelOptions { MaxDegreeOfParallelism = 16 }, async (i, _) =>
            {
                sockets[i] = await bed.Relay.ConnectAsync("svc");
                await clients[i].RunAsync(sockets[i], 0, 4);
            });

            await bed.WaitUntilAsync(() => bed.Relay.App.Echo.Sessions.Count() == Clients && bed.AllShadowsReady(1), "every session has a Ready shadow", TimeSpan.FromSeconds(60));
            var onA = bed.Relay.App.Echo.SessionsOn("a");
            Assert.True(onA > 0, "no session landed on endpoint a");

            using (var drained = await bed.Relay.Http.PostAsync("/api/endpoints/a/drain", null))
            {
                Assert.Equal(System.Net.HttpStatusCode.OK, drained.StatusCode);
                Assert.Contains($"\"movingEchoedSessions\":{onA}", await drained.Content.ReadAsStringAsync(), StringComparison.Ordinal);
            }

            await bed.WaitUntilAsync(() => bed.Relay.App.Echo.SessionsOn("a") == 0, "no echoed session is left on a", TimeSpan.FromSeconds(60));
            Assert.Equal(Clients, bed.Relay.App.Echo.Sessions.Count());

            // Every session is alive and its history intact: the rest of each script answers as if nothing happened.
            await Parallel.ForEachAsync(Enumerable.Range(0, Clients), new ParallelOptions { MaxDegreeOfParallelism = 16 }, async (i, _) => await clients[i].RunAsync(sockets[i], 4, 8));
            for (var i = 0; i < Clients; i++)
            {
                var expected = await clients[i].ReferenceAsync(backends[1].EndPoint);
                Assert.True(expected.AsSpan().SequenceEqual(clients[i].Received), $"client {i}: its bytes differ from a run without the drain");
            }

            var metrics = bed.Relay.Metrics();
            Assert.Equal(onA, SumMetric(metrics, "relay_splices_total", "trigger=\"drain\",result=\"spliced\""));
            Assert.Equal(onA, SumMetric(metrics, "relay_splice_blackout_seconds_count", ""));
            var moved = bed.Relay.App.Echo.Sessions.First(s => s.Echo.Splices.Length > 0);
            var record = Assert.Single(moved.Echo.Splices);
            Assert.Equal(("a", "b", "spliced"), (record.From, record.To, record.Result));
            Assert.True(record.BlackoutMs > 0);
            var api = await bed.Relay.Http.GetStringAsync($"/api/sessions/{moved.Session.Id}");
            Assert.Contains("\"blackoutMs\"", api, StringComparison.Ordinal);
        }
        finally
        {
            foreach (var socket in sockets)
            {
                socket?.Dispose();
            }
        }
    }

    [Fact]
    public async Task ADivergedShadowIsNeverUsed()
    {
        // WHO names the server: b answers like a (same id), c does not, so c's digests diverge.
        var backends = new List<BackendProcess>
        {
            await BackendProcess.StartSampleServerAsync("same"),
            await BackendProcess.StartSampleServerAsync("same"),
            await BackendProcess.StartSampleServerAsync("other"),
        };
        await using var bed = await EchoTestbed.StartAsync(backends, LinesPolicy.Replace("SHADOWS", "2", StringComparison.Ordinal));

        // Drain b and c so that the session's primary is a, then undrain them for its shadows.
        await bed.Relay.Http.PostAsync("/api/endpoints/b/drain", null);
        await bed.Relay.Http.PostAsync("/api/endpoints/c/drain", null);
        using var socket = await bed.Relay.ConnectAsync("svc");
        await socket.SendAllAsync("HELLO\n"u8.ToArray());
        Assert.Equal("1 WELCOME sample-protocol 1", await socket.ReadLineAsync());
        await bed.Relay.Http.PostAsync("/api/endpoints/b/undrain", null);
        await bed.Relay.Http.PostAsync("/api/endpoints/c/undrain", null);
        var session = Assert.Single(bed.Relay.App.Echo.Sessions);
        Assert.Equal("a", session.Endpoint.Id);

        await socket.SendAllAsync("WHO\n"u8.ToArray());
        Assert.Equal("2 WHO same", await socket.ReadLineAsync());
        await bed.WaitUntilAsync(() => bed.Relay.Log.Named("ShadowStateChanged").Any(e => e.Message.Contains("shadow on c", StringComparison.Ordinal) && e.Message.Contains("Diverged", StringComparison.Ordinal)), "c's shadow turns Diverged");
        await bed.WaitUntilAsync(() => session.Echo.Shadows.Any(s => s.Endpoint.Id == "b" && s.State == global::Relay.Echo.ShadowState.Ready), "b's shadow is Ready");
        Assert.DoesNotContain(session.Echo.Shadows, s => s.Endpoint.Id == "c");

        backends[0].Kill();
        await socket.SendAllAsync("STATE\n"u8.ToArray());
        var state = await socket.ReadLineAsync();
        Assert.StartsWith("3 STATE 0 0 0 3 ", state, StringComparison.Ordinal);
        Assert.Equal("b", session.Endpoint.Id);
    }

    [Fact]
    public async Task WithOnlyADivergedShadowTheSessionIsClosedAndCounted()
    {
        var backends = new List<BackendProcess> { await BackendProcess.StartSampleServerAsync("one"), await BackendProcess.StartSampleServerAsync("two") };
        await using var bed = await EchoTestbed.StartAsync(backends, LinesPolicy.Replace("SHADOWS", "1", StringComparison.Ordinal));
        await bed.Relay.Http.PostAsync("/api/endpoints/b/drain", null);
        using var socket = await bed.Relay.ConnectAsync("svc");
        await socket.SendAllAsync("WHO\n"u8.ToArray());
        Assert.Equal("1 WHO one", await socket.ReadLineAsync());
        await bed.Relay.Http.PostAsync("/api/endpoints/b/undrain", null);
        await bed.WaitUntilAsync(() => bed.Relay.Log.Named("ShadowStateChanged").Any(e => e.Message.Contains("Diverged", StringComparison.Ordinal)), "b's shadow turns Diverged");

        backends[0].Kill();
        Assert.Equal(0, await socket.ReceiveUntilClosedAsync(TimeSpan.FromSeconds(20)));
        await bed.WaitUntilAsync(() => bed.Relay.Log.Has("SessionLost"), "the loss is logged");
        var lost = bed.Relay.Log.Named("SessionLost").First();
        Assert.Contains("no shadow could take over", lost.Message, StringComparison.Ordinal);
        Assert.Equal(1, SumMetric(bed.Relay.Metrics(), "relay_echo_sessions_lost_total", ""));
    }

    [Fact]
    public async Task AFailedTakeoverRollsBackToThePrimaryWithNoByteLostOrRepeated()
    {
        var backends = await BackendProcess.StartSampleServersAsync(2);
        await using var bed = await EchoTestbed.StartAsync(backends, LinesPolicy.Replace("SHADOWS", "1", StringComparison.Ordinal));
        await bed.Relay.Http.PostAsync("/api/endpoints/b/drain", null);
        var client = new ScriptedClient(77, 40);
        using var socket = await bed.Relay.ConnectAsync("svc");
        await client.RunAsync(socket, 0, 10);
        await bed.Relay.Http.PostAsync("/api/endpoints/b/undrain", null);
        await bed.WaitUntilAsync(() => bed.AllShadowsReady(1), "the shadow on b is Ready");
        var session = Assert.Single(bed.Relay.App.Echo.Sessions);

        // b's backend dies: its agent refuses the takeover, and the session must stay on a intact.
        backends[1].Kill();
        await client.RunAsync(socket, 10, 15);
        using var migrate = await bed.Relay.Http.PostAsync($"/api/sessions/{session.Session.Id}/migrate", null);
        var answer = await migrate.Content.ReadAsStringAsync();
        Assert.Equal(System.Net.HttpStatusCode.Conflict, migrate.StatusCode);
        Assert.Contains("\"moved\":false", answer, StringComparison.Ordinal);
        Assert.Equal("a", session.Endpoint.Id);
        Assert.Contains(session.Echo.Splices, s => s.Result == "rolled_back");

        await client.RunAsync(socket, 15, 40);
        var expected = await client.ReferenceAsync(backends[0].EndPoint);
        Assert.True(expected.AsSpan().SequenceEqual(client.Received), "the session's bytes differ from a run without the failed takeover");
        Assert.True(SumMetric(bed.Relay.Metrics(), "relay_splices_total", "result=\"rolled_back\"") >= 1);
    }

    [Fact]
    public async Task AfterAFailoverTheNewPrimarysDeathIsAFailoverToo()
    {
        // After a splice the session runs through the shadow's agent to its backend. When that backend
        // dies with a request unanswered, the agent must end the takeover connection at once: the
        // client waits for the answer and sends nothing more, so otherwise nobody notices until active
        // health checks fail, seconds later (and the splice's trigger is Health, not PrimaryFailure).
        var backends = await BackendProcess.StartSampleServersAsync(3);
        await using var bed = await EchoTestbed.StartAsync(backends, LinesPolicy.Replace("SHADOWS", "2", StringComparison.Ordinal));
        using var socket = await bed.Relay.ConnectAsync("svc");
        using var stream = new NetworkStream(socket);
        using var reader = new StreamReader(stream, Encoding.ASCII);
        var moves = 0;
        async Task PingPongAsync(int count)
        {
            // One request in flight at a time, each answer awaited: the traffic that exposes a silent death.
            for (var i = 0; i < count; i++)
            {
                await stream.WriteAsync("MOVE 1 1\n"u8.ToArray());
                var line = await reader.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(30));
                Assert.True(line is not null, $"the session closed after {moves} moves");
                Interlocked.Increment(ref moves);
            }
        }

        async Task KillPrimaryUnderTrafficAsync()
        {
            var victim = Assert.Single(bed.Relay.App.Echo.Sessions).Endpoint.Id;
            var before = Volatile.Read(ref moves);
            var run = PingPongAsync(600);
            await bed.WaitUntilAsync(() => Volatile.Read(ref moves) >= before + 50, "50 answers before the kill");
            backends[victim[0] - 'a'].Kill();
            await run.WaitAsync(TimeSpan.FromSeconds(60));
            Assert.NotEqual(victim, Assert.Single(bed.Relay.App.Echo.Sessions).Endpoint.Id);
        }

        await stream.WriteAsync("HELLO\n"u8.ToArray());
        Assert.NotNull(await reader.ReadLineAsync());
        await PingPongAsync(10);
        await bed.WaitUntilAsync(() => bed.AllShadowsReady(2), "both shadows are Ready");
        var session = Assert.Single(bed.Relay.App.Echo.Sessions);

        await KillPrimaryUnderTrafficAsync();
        await bed.WaitUntilAsync(() => session.Echo.Shadows.Any(s => s.State == ShadowState.Ready), "the third endpoint's shadow is Ready");
        await KillPrimaryUnderTrafficAsync();

        var splices = session.Echo.Splices;
        Assert.Equal(2, splices.Length);
        Assert.All(splices, s => Assert.Equal((SpliceTrigger.PrimaryFailure, "spliced"), (s.Trigger, s.Result)));

        // The state the surviving backend holds is the whole session's: every move counted once.
        await stream.WriteAsync("STATE\n"u8.ToArray());
        var state = await reader.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(30));
        var expected = $"{moves + 2} STATE {moves} {moves} 0 {moves + 2} ";
        Assert.True(state?.StartsWith(expected, StringComparison.Ordinal) == true, $"STATE answered \"{state}\", expected \"{expected}...\"");
    }

    [Fact]
    public async Task AnOperatorMigratesASessionToANamedEndpoint()
    {
        var backends = await BackendProcess.StartSampleServersAsync(3);
        await using var bed = await EchoTestbed.StartAsync(backends, LinesPolicy.Replace("SHADOWS", "2", StringComparison.Ordinal));
        var client = new ScriptedClient(99, 30);
        using var socket = await bed.Relay.ConnectAsync("svc");
        await client.RunAsync(socket, 0, 10);
        await bed.WaitUntilAsync(() => bed.AllShadowsReady(2), "both shadows are Ready");
        var session = Assert.Single(bed.Relay.App.Echo.Sessions);
        var target = new[] { "a", "b", "c" }.First(id => id != session.Endpoint.Id);

        using var migrate = await bed.Relay.Http.PostAsync($"/api/sessions/{session.Session.Id}/migrate?target={target}", null);
        var answer = await migrate.Content.ReadAsStringAsync();
        Assert.True(migrate.IsSuccessStatusCode, answer);
        Assert.Contains($"\"to\":\"{target}\"", answer, StringComparison.Ordinal);
        Assert.Equal(target, session.Endpoint.Id);

        await client.RunAsync(socket, 10, 30);
        var expected = await client.ReferenceAsync(backends[0].EndPoint);
        Assert.True(expected.AsSpan().SequenceEqual(client.Received), "the session's bytes differ from a run without the migration");
        using var unknown = await bed.Relay.Http.PostAsync("/api/sessions/999999/migrate", null);
        Assert.Equal(System.Net.HttpStatusCode.NotFound, unknown.StatusCode);
    }

    [Fact]
    public async Task AnInterruptionNoticeMovesTheEndpointsSessions_AndBadBodiesGetClearErrors()
    {
        var backends = await BackendProcess.StartSampleServersAsync(2);
        await using var bed = await EchoTestbed.StartAsync(backends, LinesPolicy.Replace("SHADOWS", "1", StringComparison.Ordinal));
        const int Clients = 6;
        var clients = Enumerable.Range(0, Clients).Select(i => new ScriptedClient(700 + i, 12)).ToList();
        var sockets = new Socket[Clients];
        try
        {
            for (var i = 0; i < Clients; i++)
            {
                sockets[i] = await bed.Relay.ConnectAsync("svc");
                await clients[i].RunAsync(sockets[i], 0, 6);
            }

            await bed.WaitUntilAsync(() => bed.AllShadowsReady(1), "every session has a Ready shadow");
            var onA = bed.Relay.App.Echo.SessionsOn("a");
            Assert.True(onA > 0, "no session landed on endpoint a");

            // What curl -d sends: JSON with a form content type. Bad bodies are refused, nothing drains.
            async Task<(System.Net.HttpStatusCode Status, string Error)> PostAsync(string path, string body)
            {
                using var content = new StringContent(body, System.Text.Encoding.UTF8, "application/x-www-form-urlencoded");
                using var response = await bed.Relay.Http.PostAsync(path, content);
                using var json = System.Text.Json.JsonDocument.Parse(await response.Content.ReadAsStringAsync());
                return (response.StatusCode, json.RootElement.TryGetProperty("error", out var error) ? error.GetString() ?? "" : "");
            }

            var (status, error) = await PostAsync("/api/endpoints/a/notice", "{\"in\":");
            Assert.Equal((System.Net.HttpStatusCode.BadRequest, true), (status, error.StartsWith("body: not valid JSON", StringComparison.Ordinal)));
            (status, error) = await PostAsync("/api/endpoints/a/notice", "{\"in\":\"soon\"}");
            Assert.Equal((System.Net.HttpStatusCode.BadRequest, "in: expected a duration such as \"30s\", found \"soon\""), (status, error));
            (status, error) = await PostAsync("/api/endpoints/a/notice", "{\"at\":\"tomorrow\"}");
            Assert.Equal((System.Net.HttpStatusCode.BadRequest, true), (status, error.StartsWith("body: not valid JSON", StringComparison.Ordinal)));
            (status, error) = await PostAsync("/api/endpoints/a/notice", "{}");
            Assert.Equal(System.Net.HttpStatusCode.BadRequest, status);
            Assert.Contains("give \"at\"", error, StringComparison.Ordinal);
            (status, _) = await PostAsync("/api/endpoints/nowhere/notice", "{\"in\":\"30s\"}");
            Assert.Equal(System.Net.HttpStatusCode.NotFound, status);
            (status, error) = await PostAsync($"/api/sessions/{bed.Relay.App.Echo.Sessions.First().Session.Id}/migrate", "{\"target\":");
            Assert.Equal((System.Net.HttpStatusCode.BadRequest, true), (status, error.StartsWith("body: not valid JSON", StringComparison.Ordinal)));
            Assert.Equal(onA, bed.Relay.App.Echo.SessionsOn("a"));
            Assert.DoesNotContain("\"draining\":true", await bed.Relay.Http.GetStringAsync("/api/endpoints/a"), StringComparison.Ordinal);

            (status, error) = await PostAsync("/api/endpoints/a/notice", "{\"in\":\"30s\"}");
            Assert.Equal((System.Net.HttpStatusCode.Accepted, ""), (status, error));
            await bed.WaitUntilAsync(() => bed.Relay.App.Echo.SessionsOn("a") == 0, "no echoed session is left on a", TimeSpan.FromSeconds(60));
            using (var endpoint = System.Text.Json.JsonDocument.Parse(await bed.Relay.Http.GetStringAsync("/api/endpoints/a")))
            {
                Assert.True(endpoint.RootElement.GetProperty("draining").GetBoolean());
                var goesAway = endpoint.RootElement.GetProperty("notice").GetDateTimeOffset() - DateTimeOffset.UtcNow;
                Assert.InRange(goesAway, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(31));
            }

            // A moved session's API record names the splice's trigger as the metrics do.
            var movedId = bed.Relay.App.Echo.Sessions.First(s => s.Echo.Splices.Length > 0).Session.Id;
            using (var moved = System.Text.Json.JsonDocument.Parse(await bed.Relay.Http.GetStringAsync($"/api/sessions/{movedId}")))
            {
                var splice = moved.RootElement.GetProperty("echo").GetProperty("splices")[0];
                Assert.Equal(("notice", "spliced", "a"), (splice.GetProperty("trigger").GetString(), splice.GetProperty("result").GetString(), splice.GetProperty("from").GetString()));
            }

            // Every session carries on with its history intact.
            for (var i = 0; i < Clients; i++)
            {
                await clients[i].RunAsync(sockets[i], 6, 12);
                var expected = await clients[i].ReferenceAsync(backends[1].EndPoint);
                Assert.True(expected.AsSpan().SequenceEqual(clients[i].Received), $"client {i}: its bytes differ from a run without the notice");
            }

            Assert.Equal(onA, SumMetric(bed.Relay.Metrics(), "relay_splices_total", "trigger=\"notice\",result=\"spliced\""));
        }
        finally
        {
            foreach (var socket in sockets)
            {
                socket?.Dispose();
            }
        }
    }

    [Fact]
    public async Task LargeAnswersBetweenSmallOnes_KeepTheShadowReady_AndTheMovedSessionIdentical()
    {
        // Answers of 20-60 KiB make the agent read its backend's output into its large buffer, and
        // the 70 small ones after them make it go back to the small one: the shadow's digests must
        // match all along (a Ready shadow), and the moved session's bytes equal a run without the move.
        var backends = await BackendProcess.StartSampleServersAsync(2);
        await using var bed = await EchoTestbed.StartAsync(backends, LinesPolicy.Replace("SHADOWS", "1", StringComparison.Ordinal));
        var random = new Random(5);
        var lines = new List<string> { "HELLO", "MOVE 1 2" };
        lines.AddRange(Enumerable.Range(0, 6).Select(i => $"ECHO {i} " + new string((char)('a' + i), random.Next(20_000, 60_000))));
        lines.AddRange(Enumerable.Range(0, 70).Select(i => $"SCORE {i}"));
        var after = new[] { "ECHO after " + new string('z', 40_000), "MOVE 3 4", "STATE" };

        using var socket = await bed.Relay.ConnectAsync("svc");
        var received = new StringBuilder();
        await ExchangeAsync(socket, lines, received);
        await bed.WaitUntilAsync(() => bed.AllShadowsReady(1), "the shadow is Ready after the large answers");
        var session = Assert.Single(bed.Relay.App.Echo.Sessions);
        using (var migrate = await bed.Relay.Http.PostAsync($"/api/sessions/{session.Session.Id}/migrate", null))
        {
            var answer = await migrate.Content.ReadAsStringAsync();
            Assert.True(migrate.IsSuccessStatusCode, answer + "\n" + bed.Relay.Log.Tail(20));
        }

        await ExchangeAsync(socket, after, received);

        using var direct = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await direct.ConnectAsync(backends[0].EndPoint);
        var expected = new StringBuilder();
        await ExchangeAsync(direct, [.. lines, .. after], expected);
        Assert.Equal(expected.ToString(), received.ToString());
    }

    /// <summary>Sends each line and reads its one-line answer before the next.</summary>
    private static async Task ExchangeAsync(Socket socket, IEnumerable<string> lines, StringBuilder answers)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var buffer = new byte[64 * 1024];
        var pending = new List<byte>();
        foreach (var line in lines)
        {
            await socket.SendAsync(Encoding.ASCII.GetBytes(line + "\n"), SocketFlags.None, timeout.Token);
            int end;
            while ((end = pending.IndexOf((byte)'\n')) < 0)
            {
                var read = await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token);
                Assert.True(read > 0, $"the connection closed before the answer to \"{line[..Math.Min(line.Length, 40)]}\"");
                pending.AddRange(buffer.AsSpan(0, read));
            }

            answers.Append(Encoding.ASCII.GetString([.. pending.GetRange(0, end + 1)]));
            pending.RemoveRange(0, end + 1);
        }
    }

    [Fact]
    public async Task APlannedSpliceWithATailTheShadowHasNotAckedDeliversIdenticalBytes()
    {
        var backends = await BackendProcess.StartSampleServersAsync(2);
        var held = new List<DroppingSocket>();
        await using var bed = await EchoTestbed.StartAsync(backends, LinesPolicy.Replace("SHADOWS", "1", StringComparison.Ordinal), options: new EchoTestbedOptions
        {
            RelayPathSocketWrapper = (_, socket) =>
            {
                var dropping = new DroppingSocket(socket);
                lock (held)
                {
                    held.Add(dropping);
                }

                return dropping;
            },
        });
        await bed.Relay.Http.PostAsync("/api/endpoints/b/drain", null);
        var client = new ScriptedClient(123, 30);
        using var socket = await bed.Relay.ConnectAsync("svc");
        await client.RunAsync(socket, 0, 10);
        await bed.Relay.Http.PostAsync("/api/endpoints/b/undrain", null);
        await bed.WaitUntilAsync(() => bed.AllShadowsReady(1), "the shadow on b is Ready");
        var session = Assert.Single(bed.Relay.App.Echo.Sessions);
        Assert.Equal("a", session.Endpoint.Id);

        // The echo stops reaching b's agent: the primary answers five more bursts that the shadow never
        // sees, so the catch-up before the pause runs out and TAKEOVER carries them as its tail.
        SetDropping(held, true);
        await client.RunAsync(socket, 10, 15);
        using (var migrate = await bed.Relay.Http.PostAsync($"/api/sessions/{session.Session.Id}/migrate", null))
        {
            var answer = await migrate.Content.ReadAsStringAsync();
            Assert.True(migrate.IsSuccessStatusCode, answer + "\n" + bed.Relay.Log.Tail(20));
            Assert.Contains("\"to\":\"b\"", answer, StringComparison.Ordinal);
        }

        SetDropping(held, false);
        var spliced = Assert.Single(bed.Relay.Log.Named("Spliced"));
        var tail = System.Text.RegularExpressions.Regex.Match(spliced.Message, @"tail (\d+) bytes");
        Assert.True(tail.Success && long.Parse(tail.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) > 0, spliced.Message);

        await client.RunAsync(socket, 15, 30);
        var expected = await client.ReferenceAsync(backends[0].EndPoint);
        Assert.True(expected.AsSpan().SequenceEqual(client.Received), $"the session's bytes differ from a run without the migration\nexpected tail: {Tail(expected)}\nreceived tail: {Tail(client.Received)}");
        Assert.Equal("b", session.Endpoint.Id);
    }

    internal static double SumMetric(string metrics, string name, string labelFilter)
    {
        double sum = 0;
        foreach (var line in metrics.Split('\n'))
        {
            if (line.StartsWith(name, StringComparison.Ordinal) && (line.Length == name.Length || line[name.Length] is '{' or ' ') && line.Contains(labelFilter, StringComparison.Ordinal))
            {
                sum += double.Parse(line[(line.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture);
            }
        }

        return sum;
    }

    private static string Tail(byte[] bytes) => Encoding.ASCII.GetString(bytes.AsSpan(Math.Max(0, bytes.Length - 300)));

    private static void SetDropping(List<DroppingSocket> sockets, bool dropping)
    {
        lock (sockets)
        {
            foreach (var socket in sockets)
            {
                socket.Dropping = dropping;
            }
        }
    }

    /// <summary>A relay path socket that can silently drop everything it is asked to send.</summary>
    private sealed class DroppingSocket(IDatagramSocket inner) : IDatagramSocket
    {
        private volatile bool _dropping;

        public bool Dropping
        {
            get => _dropping;
            set => _dropping = value;
        }

        public bool ReceivesCoalesced => inner.ReceivesCoalesced;

        public int LastSegmentBytes => inner.LastSegmentBytes;

        public bool ZeroIsEmptyDatagram => inner.ZeroIsEmptyDatagram;

        public bool Send(ReadOnlySpan<byte> datagram) => _dropping || inner.Send(datagram);

        public bool SendSegments(ReadOnlySpan<byte> datagrams, int segmentBytes, int count) => _dropping || inner.SendSegments(datagrams, segmentBytes, count);

        public ValueTask<int> ReceiveAsync(Memory<byte> buffer, CancellationToken cancellationToken) => inner.ReceiveAsync(buffer, cancellationToken);

        public void Dispose() => inner.Dispose();
    }
}

[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class EchoTests
{
    public const string Name = "echo";
}
