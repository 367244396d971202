using System.Net.Sockets;
using Relay.Echo.Splice;
using Relay.FunctionalTests.Echo;

namespace Relay.FunctionalTests.Prediction;

/// <summary>
/// Relay.Predict driving echo on real sockets: sample-server processes with agents beside them; one
/// endpoint's agent starts reporting its host at 100% CPU, and the prediction service moves that
/// endpoint's sessions to their shadows before anything fails, every byte intact.
/// </summary>
[Collection(EchoTests.Name)]
public sealed class PredictionTests
{
    private const string LinesPolicy = """{ "codec": "lines", "shadows": 1, "interval": "2ms", "ackTimeout": "3s" }""";

    // cpuLimit 0.3: the CPU average (10 s time constant) crosses it about 3 s after the jump to 100%.
    private const string Prediction = """
        "prediction": { "enabled": true, "interval": "100ms", "evaluateInterval": "500ms", "cpuLimit": 0.3 },
        """;

    [Fact]
    public async Task AnEndpointWhoseHostRunsHotHasItsSessionsMovedBeforeAnythingFails()
    {
        var cpu = new double[] { 5, 5, 5 };
        var backends = await BackendProcess.StartSampleServersAsync(3);

        await using var bed = await EchoTestbed.StartAsync(backends, LinesPolicy, options: new EchoTestbedOptions
        {
            ExtraConfigJson = Prediction,
            AgentCpuPercent = i => Volatile.Read(ref cpu[i]),
        });
        Assert.True(bed.Relay.Log.Has("PredictionStarted"));
        const int Clients = 6;
        const int Bursts = 200;
        var clients = Enumerable.Range(0, Clients).Select(i => new ScriptedClient(7000 + i, Bursts)).ToList();
        var sockets = new List<Socket>();
        try
        {
            foreach (var client in clients)
            {
                var socket = await bed.Relay.ConnectAsync("svc");
                sockets.Add(socket);
                await client.RunAsync(socket, 0, 5);
            }

            await bed.WaitUntilAsync(() => bed.Relay.App.Echo.Sessions.Count() == Clients && bed.AllShadowsReady(1), "every session has a Ready shadow", TimeSpan.FromSeconds(15));
            var victim = bed.Relay.App.Echo.Sessions.GroupBy(s => s.Endpoint.Id).OrderByDescending(g => g.Count()).First().Key;
            var onVictim = bed.Relay.App.Echo.SessionsOn(victim);
            await bed.WaitUntilAsync(
                () => bed.Relay.App.Prediction.ScoreOf("svc", victim) is { Status: "Ok", Decision: "Serve" },
                $"endpoint {victim} is scored and serving");

            // Clients keep talking while the victim's agent reports its host at 100%.
            var runs = clients.Select((c, i) => c.RunAsync(sockets[i], 5, 150, TimeSpan.FromMilliseconds(20))).ToList();
            Volatile.Write(ref cpu[victim[0] - 'a'], 100);
            await bed.WaitUntilAsync(() => bed.Relay.App.Echo.SessionsOn(victim) == 0, $"no session is left on {victim}", TimeSpan.FromSeconds(18));
            await Task.WhenAll(runs).WaitAsync(TimeSpan.FromSeconds(30));
            await Task.WhenAll(clients.Select((c, i) => c.RunAsync(sockets[i], 150, Bursts)));

            Assert.All(backends, b => Assert.False(b.HasExited));
            for (var i = 0; i < Clients; i++)
            {
                var expected = await clients[i].ReferenceAsync(backends[0].EndPoint);
                Assert.True(expected.AsSpan().SequenceEqual(clients[i].Received), $"client {i}: its bytes differ from a run without the move");
            }

            var moved = bed.Relay.App.Echo.Sessions.Where(s => s.Echo.Splices.Length > 0).ToList();
            Assert.Equal(onVictim, moved.Count);
            Assert.All(moved, s => Assert.Equal((victim, SpliceTrigger.Health, "spliced"), (s.Echo.Splices[0].From, s.Echo.Splices[0].Trigger, s.Echo.Splices[0].Result)));
            var metrics = bed.Relay.Metrics();
            Assert.Equal(onVictim, SpliceTests.SumMetric(metrics, "relay_splices_total", "trigger=\"health\",result=\"spliced\""));
            Assert.Equal(0, SpliceTests.SumMetric(metrics, "relay_echo_sessions_lost_total", ""));
            // Sessions may go as session_degrading (their score carries the endpoint's P) before the
            // endpoint's own dwell makes it endpoint_evacuating.
            Assert.True(SpliceTests.SumMetric(metrics, "relay_migrations_recommended_total", "") >= onVictim, metrics);
            Assert.Contains($"relay_endpoint_score{{cluster=\"svc\",endpoint=\"{victim}\"}}", metrics, StringComparison.Ordinal);

            // The admin API tells why. The endpoint's own decision is Evacuate after its 2 s dwell, unless
            // the relay's scheduling lag holds soft decisions (the self-health gate: Watch) on a busy machine.
            try
            {
                await bed.WaitUntilAsync(() => bed.Relay.App.Prediction.ScoreOf("svc", victim) is { Decision: "Evacuate" }, $"{victim} is evacuated", TimeSpan.FromSeconds(5));
            }
            catch (TimeoutException)
            {
                Assert.Equal("Watch", bed.Relay.App.Prediction.ScoreOf("svc", victim)!.Decision);
            }

            var score = await bed.Relay.Http.GetStringAsync($"/api/endpoints/{victim}/score");
            Assert.Contains("\"dominant\":\"Host\"", score, StringComparison.Ordinal);
            var endpoints = await bed.Relay.Http.GetStringAsync("/api/endpoints");
            Assert.Contains("\"score\":{\"score\":", endpoints, StringComparison.Ordinal);
            Assert.Contains("\"predictedUnstable\":", endpoints, StringComparison.Ordinal);
            var recommendations = await bed.Relay.Http.GetStringAsync("/api/recommendations");
            Assert.Contains("\"action\":\"spliced\"", recommendations, StringComparison.Ordinal);
            Assert.Contains($"\"from\":\"{victim}\"", recommendations, StringComparison.Ordinal);
            var scaling = await bed.Relay.Http.GetStringAsync("/api/scaling");
            Assert.Contains("\"route\":\"svc\"", scaling, StringComparison.Ordinal);
        }
        finally
        {
            foreach (var socket in sockets)
            {
                socket.Dispose();
            }
        }
    }
}
