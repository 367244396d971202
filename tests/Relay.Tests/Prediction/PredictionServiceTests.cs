using System.Collections.Immutable;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Relay.Clusters;
using Relay.Configuration;
using Relay.Diagnostics;
using Relay.Echo.Splice;
using Relay.Health;
using Relay.Prediction;

namespace Relay.Tests.Prediction;

/// <summary>The prediction service on a fake clock: signals in, decisions and migrations out.</summary>
public sealed class PredictionServiceTests
{
    private static readonly TimeSpan s_step = TimeSpan.FromMilliseconds(100);

    [Fact]
    public async Task AHealthyClusterScoresWellAndMovesNothing()
    {
        await using var bed = Bed.Create();
        bed.AddSessions("a", 5, "b");
        bed.Run(TimeSpan.FromSeconds(20));

        foreach (var id in new[] { "a", "b", "c" })
        {
            var score = bed.Service.ScoreOf("svc", id)!;
            Assert.Equal("Ok", score.Status);
            Assert.Equal("Serve", score.Decision);
            Assert.True(score.Score > 0.8, $"{id}: {score.Summary}");
            Assert.False(bed.Endpoint(id).PredictedUnstable);
        }

        Assert.Empty(bed.Echo.Calls);
        Assert.Equal(0, bed.Service.Recommendations(10).Counters.Recommended);
    }

    [Fact]
    public async Task AnEndpointWhoseProbesStopIsEvacuatedAndItsSessionsMoveToTheirReadyShadows()
    {
        await using var bed = Bed.Create();
        bed.AddSessions("a", 5, "b");
        bed.Run(TimeSpan.FromSeconds(10));
        Assert.Empty(bed.Echo.Calls);

        bed.Failing.Add("a");
        bed.Run(TimeSpan.FromSeconds(3));

        var score = bed.Service.ScoreOf("svc", "a")!;
        Assert.Equal("Evacuate", score.Decision);
        Assert.Contains("Liveness", score.Reasons);
        Assert.True(bed.Endpoint("a").PredictedUnstable);
        Assert.False(bed.Endpoint("a").IsAvailable(bed.Time.GetTimestamp()));
        Assert.Equal(5, bed.Echo.Calls.Count);
        Assert.All(bed.Echo.Calls, c => Assert.Equal(("b", SpliceTrigger.Health), (c.Target, c.Trigger)));

        bed.Echo.CompleteAll();
        bed.Run(TimeSpan.FromSeconds(2));
        var view = bed.Service.Recommendations(100);
        Assert.Equal(5, view.Counters.Spliced);
        Assert.All(view.Recent, r => Assert.Equal(("spliced", "a", "b", "endpoint_evacuating"), (r.Action, r.From, r.To, r.Reason)));
        Assert.Equal(5, bed.Echo.Calls.Count);
        Assert.Contains("relay_migrations_recommended_total{reason=\"endpoint_evacuating\"} 5", await bed.MetricsAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task NeverMoreThanMaxConcurrentMigrationsAreInFlight()
    {
        await using var bed = Bed.Create(maxConcurrentMigrations: 2);
        bed.AddSessions("a", 10, "c");
        bed.Run(TimeSpan.FromSeconds(10));
        bed.Failing.Add("a");
        bed.Run(TimeSpan.FromSeconds(3));

        Assert.Equal(2, bed.Echo.Calls.Count);
        Assert.Equal(2, bed.Service.Recommendations(10).InFlight);
        Assert.True(bed.Service.Recommendations(10).Counters.Deferred > 0);

        for (var round = 0; round < 10 && bed.Echo.Calls.Count < 10; round++)
        {
            bed.Echo.CompleteAll();
            bed.Run(TimeSpan.FromSeconds(1));
            Assert.True(bed.Service.Recommendations(10).InFlight <= 2);
        }

        bed.Echo.CompleteAll();
        Assert.Equal(10, bed.Echo.Calls.Select(c => c.Session).Distinct().Count());
        Assert.Equal(10, bed.Echo.Calls.Count);
    }

    [Fact]
    public async Task AgentCpuAboveTheLimitEvacuatesAfterTheDwellWithHostAsTheReason()
    {
        await using var bed = Bed.Create(extra: "\"cpuLimit\": 0.5");
        bed.AddSessions("a", 3, "b");
        bed.Run(TimeSpan.FromSeconds(10));
        bed.Echo.Cpu["a"] = 100;
        bed.Run(TimeSpan.FromSeconds(1));
        Assert.Empty(bed.Echo.Calls);

        bed.Run(TimeSpan.FromSeconds(15));
        var score = bed.Service.ScoreOf("svc", "a")!;
        Assert.Equal("Evacuate", score.Decision);
        Assert.Equal("Host", score.Dominant);
        Assert.Equal(3, bed.Echo.Calls.Count);
        Assert.All(bed.Service.Recommendations(10).Recent, r => Assert.Equal("Host", r.Cause));
    }

    [Fact]
    public async Task AFailedMoveIsRetriedOnlyAfterTheRetryDelay()
    {
        await using var bed = Bed.Create();
        bed.AddSessions("a", 1, "b");
        bed.Run(TimeSpan.FromSeconds(10));
        bed.Failing.Add("a");
        bed.Echo.FailMoves = true;
        bed.Run(TimeSpan.FromSeconds(3));
        Assert.Single(bed.Echo.Calls);
        bed.Echo.CompleteAll();
        bed.Run(PredictionService.RetryAfterFailure - TimeSpan.FromSeconds(1));
        Assert.Single(bed.Echo.Calls);
        bed.Run(TimeSpan.FromSeconds(2));
        Assert.Equal(2, bed.Echo.Calls.Count);
        Assert.Contains(bed.Service.Recommendations(10).Recent, r => r.Action == "failed" && r.Detail == "refused");
    }

    [Fact]
    public async Task WhenEveryEndpointLooksDeadNoneIsMadeUnavailable()
    {
        await using var bed = Bed.Create();
        bed.Run(TimeSpan.FromSeconds(10));
        bed.Failing.UnionWith(["a", "b", "c"]);
        bed.Run(TimeSpan.FromSeconds(5));
        Assert.All(new[] { "a", "b", "c" }, id => Assert.False(bed.Endpoint(id).PredictedUnstable));
        Assert.True(bed.Service.ScoreOf("svc", "a")!.FailOpen);
    }

    [Fact]
    public async Task StartTurnsTheHealthBasedEvacuationOffAndDisposeTurnsItBackOn()
    {
        var bed = Bed.Create();
        bed.Service.Start();
        Assert.False(bed.Echo.HealthEvacuationOn);
        await bed.DisposeAsync();
        Assert.True(bed.Echo.HealthEvacuationOn);

        await using var off = Bed.Create(enabled: false);
        off.Service.Start();
        Assert.True(off.Echo.HealthEvacuationOn);
        Assert.Null(off.Service.ScoreOf("svc", "a"));
    }

    [Fact]
    public async Task TheTimerRunsOnTheRuntimesTimeProvider()
    {
        await using var bed = Bed.Create();
        bed.Service.Start();
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (bed.Service.ScoreOf("svc", "a")?.Status != "Ok")
        {
            Assert.True(DateTime.UtcNow < deadline, "the timer never scored endpoint a");
            bed.Probe();
            bed.Time.Advance(s_step);
            await Task.Delay(5);
        }
    }

    [Fact]
    public async Task ScalingIsAdvisedPerRoute()
    {
        await using var bed = Bed.Create(extra: "\"endpointCapacity\": 2");
        for (var i = 0; i < 12; i++)
        {
            bed.Endpoint("a").SessionStarted();
        }

        bed.Run(TimeSpan.FromSeconds(3));
        var scaling = Assert.Single(bed.Service.Scaling());
        Assert.Equal(("svc", "svc", 3), (scaling.Route, scaling.Cluster, scaling.CurrentEndpoints));
        Assert.Equal("ScaleOut", scaling.Direction);
        Assert.True(scaling.DesiredEndpoints > 3);
    }

    /// <summary>A relay runtime with cluster svc (a, b, c), a fake echo and the service, driven by hand.</summary>
    private sealed class Bed : IAsyncDisposable
    {
        private Bed(RelayRuntime runtime, FakeTimeProvider time, FakeEcho echo, PredictionService service)
        {
            Runtime = runtime;
            Time = time;
            Echo = echo;
            Service = service;
        }

        public RelayRuntime Runtime { get; }

        public FakeTimeProvider Time { get; }

        public FakeEcho Echo { get; }

        public PredictionService Service { get; }

        public HashSet<string> Failing { get; } = new(StringComparer.Ordinal);

        public static Bed Create(int maxConcurrentMigrations = 16, string? extra = null, bool enabled = true)
        {
            var json = $$"""
                {
                  "echo": { "maxConcurrentMigrations": {{maxConcurrentMigrations}} },
                  "prediction": { "enabled": {{(enabled ? "true" : "false")}} {{(extra is null ? "" : ", " + extra)}} },
                  "routes": { "svc": { "listen": "127.0.0.1:0", "cluster": "svc" } },
                  "clusters": { "svc": { "endpoints": {
                    "a": { "address": "127.0.0.1:1", "zone": "z0" },
                    "b": { "address": "127.0.0.1:2", "zone": "z1" },
                    "c": { "address": "127.0.0.1:3", "zone": "z2" } } } }
                }
                """;
            var result = ConfigLoader.Parse(json);
            Assert.True(result.IsValid, string.Join("\n", result.Errors));
            var time = new FakeTimeProvider(DateTimeOffset.Parse("2026-01-01T00:00:00Z", System.Globalization.CultureInfo.InvariantCulture));
            var runtime = new RelayRuntime(result.Config!, new RelayMetrics(), time, NullLogger<RelayRuntime>.Instance);
            var echo = new FakeEcho(maxConcurrentMigrations);
            return new Bed(runtime, time, echo, new PredictionService(runtime, echo, NullLogger<PredictionService>.Instance));
        }

        public EndpointState Endpoint(string id) => Runtime.FindEndpoint(id)!;

        public void AddSessions(string endpoint, int count, string readyShadow)
        {
            for (var i = 0; i < count; i++)
            {
                Echo.Sessions[Echo.Sessions.Count + 1] = new EchoedSession(Echo.Sessions.Count + 1, "svc", endpoint, [readyShadow]);
            }
        }

        /// <summary>Probes every endpoint every 300 ms, agent heartbeats every 500 ms, a pass every 100 ms.</summary>
        public void Run(TimeSpan duration)
        {
            for (var t = TimeSpan.Zero; t < duration; t += s_step)
            {
                Time.Advance(s_step);
                var ms = (long)Time.GetUtcNow().TimeOfDay.TotalMilliseconds;
                if (ms % 300 == 0)
                {
                    Probe();
                }

                if (ms % 500 == 0)
                {
                    foreach (var id in new[] { "a", "b", "c" })
                    {
                        Echo.Heartbeats[id] = new AgentReport(Echo.Cpu.GetValueOrDefault(id, 5), Time.GetUtcNow());
                    }
                }

                Service.Tick();
            }
        }

        public void Probe()
        {
            foreach (var id in new[] { "a", "b", "c" })
            {
                var failing = Failing.Contains(id);
                Service.OnProbe(new ProbeOutcome(Endpoint(id), !failing, TimeSpan.FromMilliseconds(failing ? 200 : 2), Time.GetTimestamp()));
            }
        }

        public async Task<string> MetricsAsync()
        {
            using var stream = new MemoryStream();
            await Runtime.Metrics.Registry.CollectAndExportAsTextAsync(stream);
            return System.Text.Encoding.UTF8.GetString(stream.ToArray());
        }

        public async ValueTask DisposeAsync() => await Service.DisposeAsync();
    }

    private sealed record Call(long Session, string? Target, SpliceTrigger Trigger, TaskCompletionSource<SpliceOutcome?> Done);

    /// <summary>Echo as the service sees it; moves finish when the test says so.</summary>
    private sealed class FakeEcho(int maxConcurrentMigrations) : IEchoSignals
    {
        public Dictionary<long, EchoedSession> Sessions { get; } = [];

        public Dictionary<string, AgentReport> Heartbeats { get; } = new(StringComparer.Ordinal);

        public Dictionary<string, double> Cpu { get; } = new(StringComparer.Ordinal);

        public List<Call> Calls { get; } = [];

        public bool FailMoves { get; set; }

        public bool HealthEvacuationOn { get; private set; } = true;

        public int MaxConcurrentMigrations => maxConcurrentMigrations;

        public bool HealthEvacuation
        {
            set => HealthEvacuationOn = value;
        }

        public void CollectSessions(List<EchoedSession> into) => into.AddRange(Sessions.Values);

        public void CollectHeartbeats(Dictionary<string, AgentReport> into)
        {
            foreach (var (id, report) in Heartbeats)
            {
                into[id] = report;
            }
        }

        public DateTimeOffset? NoticeFor(string endpoint) => null;

        public Task<SpliceOutcome?> MigrateAsync(long sessionId, string? target, SpliceTrigger trigger)
        {
            var done = new TaskCompletionSource<SpliceOutcome?>();
            lock (Calls)
            {
                Calls.Add(new Call(sessionId, target, trigger, done));
            }

            return done.Task;
        }

        /// <summary>Finishes every pending move: the session now runs on its target (or the move is refused).</summary>
        public void CompleteAll()
        {
            List<Call> pending;
            lock (Calls)
            {
                pending = [.. Calls.Where(c => !c.Done.Task.IsCompleted)];
            }

            foreach (var call in pending)
            {
                var session = Sessions[call.Session];
                if (FailMoves)
                {
                    call.Done.SetResult(new SpliceOutcome(false, session.Endpoint, null, 0, "refused"));
                    continue;
                }

                Sessions[call.Session] = session with { Endpoint = call.Target!, ReadyShadows = ImmutableArray<string>.Empty };
                call.Done.SetResult(new SpliceOutcome(true, session.Endpoint, call.Target, 1.5, null));
            }
        }
    }
}
