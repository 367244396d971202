using System.Diagnostics;
using Relay.FunctionalTests.Infrastructure;

namespace Relay.FunctionalTests.Echo;

/// <summary>Real redis-servers as primary and shadow behind the resp codec, driven by real redis-cli clients.</summary>
[Collection(EchoTests.Name)]
public sealed class RedisSpliceTests
{
    [Fact]
    public async Task KillingThePrimaryRedisLosesNoCommand()
    {
        var server = ExternalProcess.Find("redis-server");
        var cli = ExternalProcess.Find("redis-cli");
        if (server is null || cli is null)
        {
            Assert.Skip("needs redis-server and redis-cli (Debian packages redis-server, redis-tools; ./run-relay.sh test installs them as root)");
        }

        var backends = new List<BackendProcess> { await BackendProcess.StartRedisAsync(server), await BackendProcess.StartRedisAsync(server) };
        await using var bed = await EchoTestbed.StartAsync(backends, """{ "codec": "resp", "shadows": 1, "interval": "2ms", "ackTimeout": "3s", "uncomparedResponses": 1 }""");
        var relay = bed.Relay.Route("svc");
        const int Clients = 4;
        const int Commands = 400;
        var processes = new List<Process>();
        try
        {
            for (var i = 0; i < Clients; i++)
            {
                var info = new ProcessStartInfo(cli) { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
                foreach (var arg in new[] { "-h", "127.0.0.1", "-p", relay.Port.ToString(System.Globalization.CultureInfo.InvariantCulture) })
                {
                    info.ArgumentList.Add(arg);
                }

                processes.Add(Process.Start(info)!);
            }

            // Each client: commands on its own keys, whose answers depend on the session's history.
            var outputs = processes.Select(p => new List<string>()).ToArray();
            var readers = processes.Select((p, i) => Task.Run(async () =>
            {
                while (await p.StandardOutput.ReadLineAsync() is { } line)
                {
                    lock (outputs[i])
                    {
                        outputs[i].Add(line);
                    }
                }
            })).ToArray();
            var expected = Enumerable.Range(0, Clients).Select(_ => new List<string>()).ToArray();
            var sent = 0;
            var killed = false;
            for (var n = 0; n < Commands; n++)
            {
                for (var i = 0; i < Clients; i++)
                {
                    var (command, answer) = (n % 4) switch
                    {
                        0 => ($"SET k:{i}:{n} v{n}-{i}", "OK"),
                        1 => ($"INCR counter:{i}", ((n / 4) + 1).ToString(System.Globalization.CultureInfo.InvariantCulture)),
                        2 => ($"APPEND log:{i} ab", (2 * ((n / 4) + 1)).ToString(System.Globalization.CultureInfo.InvariantCulture)),
                        _ => ($"GET k:{i}:{n - 3}", $"v{n - 3}-{i}"),
                    };
                    await processes[i].StandardInput.WriteLineAsync(command);
                    await processes[i].StandardInput.FlushAsync();
                    expected[i].Add(answer);
                }

                sent++;
                if (n == 20)
                {
                    await bed.WaitUntilAsync(() => bed.Relay.App.Echo.Sessions.Count() == Clients && bed.AllShadowsReady(1), "every redis session has a Ready shadow");
                }

                if (n == Commands / 3 && !killed)
                {
                    var victim = bed.Relay.App.Echo.Sessions.GroupBy(s => s.Endpoint.Id).OrderByDescending(g => g.Count()).First().Key;
                    backends[victim[0] - 'a'].Kill();
                    killed = true;
                }

                await Task.Delay(2);
            }

            foreach (var process in processes)
            {
                process.StandardInput.Close();
            }

            await Task.WhenAll(readers).WaitAsync(TimeSpan.FromSeconds(60));
            for (var i = 0; i < Clients; i++)
            {
                var at = Enumerable.Range(0, Math.Min(expected[i].Count, outputs[i].Count)).FirstOrDefault(k => expected[i][k] != outputs[i][k], -1);
                Assert.True(at < 0 && expected[i].Count == outputs[i].Count, $"client {i}: answer {at} differs (of {expected[i].Count} expected, {outputs[i].Count} received)\nexpected: {string.Join(" | ", expected[i].Skip(Math.Max(0, at - 3)).Take(8))}\nreceived: {string.Join(" | ", outputs[i].Skip(Math.Max(0, at - 3)).Take(8))}\n{string.Join("\n", bed.Relay.Log.Entries.Where(e => e.EventName is "Spliced" or "ShadowStateChanged" or "TakeoverFailed" or "SessionStarted").Select(e => e.EventName + ": " + e.Message).Take(80))}");
            }

            Assert.True(SpliceTests.SumMetric(bed.Relay.Metrics(), "relay_splices_total", "result=\"spliced\"") >= 1);
        }
        finally
        {
            foreach (var process in processes)
            {
                if (!process.HasExited)
                {
                    process.Kill();
                }

                process.Dispose();
            }
        }
    }
}
