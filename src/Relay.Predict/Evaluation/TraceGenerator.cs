namespace Relay.Predict.Evaluation;

/// <summary>Parameters shared by the generator and the detectors: what "failing" means.</summary>
public sealed record TraceSettings
{
    public int Endpoints { get; init; } = 8;

    public double RequestsPerSecond { get; init; } = 20;

    public double LatencySloSeconds { get; init; } = 0.25;

    public double ErrorRateLimit { get; init; } = 0.2;

    public double Capacity { get; init; } = 100;

    /// <summary>Client request timeout: a slower response is a failure.</summary>
    public double RequestTimeoutSeconds { get; init; } = 1.0;

    /// <summary>HAProxy defaults: inter 2 s, and the check timeout falls back to inter.</summary>
    public double ProbeIntervalSeconds { get; init; } = 2.0;

    public double NoFaultDurationSeconds { get; init; } = 7200;

    /// <summary>Share of requests failing on a healthy endpoint.</summary>
    public double BackgroundErrorRate { get; init; } = 0.001;

    /// <summary>Heartbeat interval jitter, ± this share.</summary>
    public double HeartbeatJitter { get; init; } = 0.1;

    /// <summary>Mean time between nuisance stretches (slow spells starting with a stall).</summary>
    public double NuisanceMeanIntervalSeconds { get; init; } = 600;

    /// <summary>A harsher world nothing was tuned on: 5× the background errors, ±30% heartbeat
    /// jitter, a nuisance every ~3 minutes. Reported as a stress check, not a target.</summary>
    public static TraceSettings Stress { get; } = new() { BackgroundErrorRate = 0.005, HeartbeatJitter = 0.3, NuisanceMeanIntervalSeconds = 200 };
}

/// <summary>
/// Synthetic cluster traces with one injected fault, deterministic per seed. Every endpoint
/// sends heartbeats every 100-250 ms, serves Poisson requests with log-normal latency, answers
/// health checks every 2 s and reports load every second and host metrics every 5 s. The
/// fault's onset is the moment the endpoint stops being usable: latency mean above the SLO,
/// error rate above the limit, a pause of at least 1 s, load above capacity, or gone.
/// </summary>
public static class TraceGenerator
{
    private const double LatencySigma = 0.35;

    public static Trace Generate(FaultKind kind, int seed, TraceSettings? settings = null)
    {
        settings ??= new TraceSettings();
        var rng = new Random(Mix(seed, (int)kind, 0x5EED));
        var n = settings.Endpoints;
        var profiles = new Profile[n];
        var zones = new int[n];
        for (var i = 0; i < n; i++)
        {
            zones[i] = i % 3;
            profiles[i] = new Profile
            {
                HeartbeatInterval = 0.1 + (0.15 * rng.NextDouble()),
                BaseLatency = 0.02 + (0.01 * rng.NextDouble()),
                LoadBase = 30 + (30 * rng.NextDouble()),
                LoadPhase = rng.NextDouble() * 2 * Math.PI,
                MemBase = 0.4 + (0.2 * rng.NextDouble()),
                BackgroundErrorRate = settings.BackgroundErrorRate,
            };
        }

        var faulty = kind == FaultKind.NoFault ? -1 : rng.Next(n);
        var faultStart = double.NaN;
        var onset = double.NaN;
        double duration;
        if (kind == FaultKind.NoFault)
        {
            duration = settings.NoFaultDurationSeconds;
        }
        else
        {
            faultStart = 120 + (120 * rng.NextDouble());
            var p = profiles[faulty];
            p.Kind = kind;
            p.FaultStart = faultStart;
            p.Ramp = 60 + (120 * rng.NextDouble());
            p.Shape = 1 + rng.NextDouble();
            switch (kind)
            {
                case FaultKind.Crash:
                    p.Down.Add((faultStart, double.PositiveInfinity));
                    onset = faultStart;
                    duration = faultStart + 60;
                    break;
                case FaultKind.SpotNotice:
                    p.NoticeAt = faultStart;
                    p.InterruptAt = faultStart + 30 + (90 * rng.NextDouble());
                    p.Down.Add((p.InterruptAt, double.PositiveInfinity));
                    onset = p.InterruptAt;
                    duration = onset + 60;
                    break;
                case FaultKind.LatencyRamp:
                    p.LatencyTarget = settings.LatencySloSeconds;
                    onset = faultStart + p.Ramp;
                    duration = onset + 120;
                    break;
                case FaultKind.ErrorRamp:
                    p.ErrorTarget = settings.ErrorRateLimit;
                    onset = faultStart + p.Ramp;
                    duration = onset + 120;
                    break;
                case FaultKind.Overload:
                    onset = faultStart + p.Ramp;
                    duration = onset + 120;
                    p.Capacity = settings.Capacity;
                    break;
                case FaultKind.GcPauses:
                {
                    var t = faultStart + (4 * rng.NextDouble());
                    duration = double.NaN;
                    while (true)
                    {
                        var u = Math.Pow(Math.Max(0, (t - faultStart) / p.Ramp), p.Shape);
                        var d = Math.Min(3.0, 0.05 + (0.95 * u));
                        p.Pauses.Add((t, t + d));
                        if (d >= 1.0 && double.IsNaN(onset))
                        {
                            onset = t;
                            duration = onset + 120;
                        }

                        t += d + 4 + (4 * rng.NextDouble());
                        if (!double.IsNaN(duration) && t > duration)
                        {
                            break;
                        }
                    }

                    break;
                }

                case FaultKind.SinglePause:
                    p.Pauses.Add((faultStart, faultStart + 0.5));
                    duration = faultStart + 300;
                    break;
                case FaultKind.GrayFailure:
                    p.GrayFactor = 4 + (2 * rng.NextDouble());
                    onset = faultStart;
                    duration = faultStart + 120;
                    break;
                case FaultKind.Flapping:
                {
                    onset = faultStart;
                    duration = faultStart + 600;
                    var t = faultStart;
                    while (t < duration)
                    {
                        var down = 2 + (3 * rng.NextDouble());
                        p.Down.Add((t, t + down));
                        t += down + 10 + (20 * rng.NextDouble());
                    }

                    break;
                }

                default:
                    throw new ArgumentOutOfRangeException(nameof(kind));
            }
        }

        // Background nuisance on every endpoint, faulty or not: every ~10 min on average a
        // 5-20 s stretch of 1.5-2.5x latency that starts with a 100-300 ms stall. A detector
        // should ride these out.
        for (var i = 0; i < n; i++)
        {
            var t = settings.NuisanceMeanIntervalSeconds * -Math.Log(1.0 - rng.NextDouble());
            while (t < duration)
            {
                var length = 5 + (15 * rng.NextDouble());
                profiles[i].Nuisance.Add((t, t + length, 1.5 + rng.NextDouble()));
                if (double.IsNaN(profiles[i].PauseEnd(t)))
                {
                    profiles[i].InsertPause(t, t + 0.1 + (0.2 * rng.NextDouble()));
                }

                t += length + (settings.NuisanceMeanIntervalSeconds * -Math.Log(1.0 - rng.NextDouble()));
            }
        }

        var events = new List<TraceEvent>((int)(duration * n * 30));
        for (var i = 0; i < n; i++)
        {
            var erng = new Random(Mix(seed, (int)kind, i));
            EmitEndpoint(events, i, profiles[i], erng, duration, settings);
        }

        events.Sort(static (a, b) => a.Time.CompareTo(b.Time));
        return new Trace
        {
            Kind = kind,
            Seed = seed,
            Endpoints = n,
            DurationSeconds = duration,
            FaultyEndpoint = faulty,
            FaultStart = faultStart,
            Onset = onset,
            Events = [.. events],
            Zones = zones,
        };
    }

    private static void EmitEndpoint(List<TraceEvent> events, int e, Profile p, Random rng, double duration, TraceSettings settings)
    {
        // Heartbeats: a heartbeat due during a pause leaves when the pause ends; none while down.
        var t = rng.NextDouble() * p.HeartbeatInterval;
        while (t < duration)
        {
            var send = t;
            var pauseEnd = p.PauseEnd(send);
            if (!double.IsNaN(pauseEnd))
            {
                send = pauseEnd;
            }

            if (p.Alive(send))
            {
                events.Add(new TraceEvent(send + 0.0005 + (0.0025 * rng.NextDouble()), e, TraceEventKind.Heartbeat, 0, 0, false));
            }

            t = send + (p.HeartbeatInterval * (1 - settings.HeartbeatJitter + (2 * settings.HeartbeatJitter * rng.NextDouble())));
        }

        // Requests: Poisson arrivals.
        t = Exponential(rng, settings.RequestsPerSecond);
        while (t < duration)
        {
            var arrival = t;
            t += Exponential(rng, settings.RequestsPerSecond);
            if (!p.Alive(arrival))
            {
                events.Add(new TraceEvent(arrival + settings.RequestTimeoutSeconds, e, TraceEventKind.Request, settings.RequestTimeoutSeconds, 0, true));
                continue;
            }

            var latency = p.BaseLatency * p.LatencyFactor(arrival) * LogNormalUnitMean(rng);
            var pauseEnd = p.PauseEnd(arrival);
            if (!double.IsNaN(pauseEnd))
            {
                latency += pauseEnd - arrival;
            }

            var failed = rng.NextDouble() < p.ErrorRate(arrival);
            if (failed)
            {
                latency = Math.Min(latency, p.BaseLatency);
            }

            if (latency >= settings.RequestTimeoutSeconds)
            {
                latency = settings.RequestTimeoutSeconds;
                failed = true;
            }

            events.Add(new TraceEvent(arrival + latency, e, TraceEventKind.Request, latency, 0, failed));
        }

        // Health checks every 2 s (HAProxy inter), timeout = inter.
        t = rng.NextDouble() * settings.ProbeIntervalSeconds;
        while (t < duration)
        {
            var send = t;
            t += settings.ProbeIntervalSeconds;
            var timeout = settings.ProbeIntervalSeconds;
            if (!p.Alive(send))
            {
                events.Add(new TraceEvent(send + timeout, e, TraceEventKind.Probe, timeout, 0, true));
                continue;
            }

            var latency = p.BaseLatency * p.LatencyFactor(send) * LogNormalUnitMean(rng);
            var pauseEnd = p.PauseEnd(send);
            if (!double.IsNaN(pauseEnd))
            {
                latency += pauseEnd - send;
            }

            var failed = rng.NextDouble() < p.ErrorRate(send) || latency >= timeout;
            events.Add(new TraceEvent(send + Math.Min(latency, timeout), e, TraceEventKind.Probe, Math.Min(latency, timeout), 0, failed));
        }

        // Load every second, host metrics every 5 s, from the agent (silent while down or paused).
        for (var s = 1.0; s < duration; s += 1.0)
        {
            if (!p.Alive(s) || !double.IsNaN(p.PauseEnd(s)))
            {
                continue;
            }

            var load = p.Load(s) + (2 * (rng.NextDouble() - 0.5));
            events.Add(new TraceEvent(s, e, TraceEventKind.Load, Math.Max(0, load), 0, false));
            if (((int)s % 5) == 0)
            {
                var rho = load / settings.Capacity;
                var cpu = Math.Clamp(0.1 + (0.6 * rho) + (0.04 * (rng.NextDouble() - 0.5)), 0, 1);
                var mem = Math.Clamp(p.Memory(s) + (0.02 * (rng.NextDouble() - 0.5)), 0, 1);
                events.Add(new TraceEvent(s, e, TraceEventKind.Host, cpu, mem, false));
            }
        }

        if (!double.IsNaN(p.NoticeAt))
        {
            events.Add(new TraceEvent(p.NoticeAt, e, TraceEventKind.Notice, p.InterruptAt, 0, false));
        }
    }

    /// <summary>Deterministic seed mixing (HashCode.Combine is randomised per process, which
    /// would make traces differ between runs).</summary>
    private static int Mix(int a, int b, int c)
    {
        var h = 0x9E3779B97F4A7C15UL;
        foreach (var v in (ReadOnlySpan<int>)[a, b, c])
        {
            h ^= (uint)v;
            h *= 0xBF58476D1CE4E5B9UL;
            h ^= h >> 31;
        }

        return (int)(h & 0x7FFFFFFF);
    }

    private static double Exponential(Random rng, double rate) => -Math.Log(1.0 - rng.NextDouble()) / rate;

    private static double LogNormalUnitMean(Random rng)
    {
        var u1 = 1.0 - rng.NextDouble();
        var u2 = rng.NextDouble();
        var z = Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2.0 * Math.PI * u2);
        return Math.Exp((LatencySigma * z) - (LatencySigma * LatencySigma / 2));
    }

    private sealed class Profile
    {
        public double HeartbeatInterval;
        public double BaseLatency;
        public double LoadBase;
        public double LoadPhase;
        public double MemBase;
        public double BackgroundErrorRate = 0.001;
        public FaultKind Kind = FaultKind.NoFault;
        public double FaultStart = double.NaN;
        public double Ramp;
        public double Shape = 1;
        public double LatencyTarget;
        public double ErrorTarget;
        public double GrayFactor = 1;
        public double Capacity = 100;
        public double NoticeAt = double.NaN;
        public double InterruptAt = double.NaN;
        public readonly List<(double Start, double End)> Down = [];
        public readonly List<(double Start, double End)> Pauses = [];
        public readonly List<(double Start, double End, double Factor)> Nuisance = [];

        public void InsertPause(double start, double end)
        {
            var index = 0;
            while (index < Pauses.Count && Pauses[index].Start < start)
            {
                index++;
            }

            if (index < Pauses.Count && Pauses[index].Start < end)
            {
                end = Pauses[index].Start;
            }

            Pauses.Insert(index, (start, end));
        }

        private double NuisanceFactor(double t)
        {
            foreach (var (s, e, f) in Nuisance)
            {
                if (t >= s && t < e)
                {
                    return f;
                }
            }

            return 1.0;
        }

        private double Progress(double t)
            => double.IsNaN(FaultStart) || t < FaultStart ? 0.0 : Math.Pow((t - FaultStart) / Ramp, Shape);

        public bool Alive(double t)
        {
            foreach (var (s, e) in Down)
            {
                if (t >= s && t < e)
                {
                    return false;
                }
            }

            return true;
        }

        public double PauseEnd(double t)
        {
            var lo = 0;
            var hi = Pauses.Count - 1;
            while (lo <= hi)
            {
                var mid = (lo + hi) >> 1;
                var (s, e) = Pauses[mid];
                if (t < s)
                {
                    hi = mid - 1;
                }
                else if (t >= e)
                {
                    lo = mid + 1;
                }
                else
                {
                    return e;
                }
            }

            return double.NaN;
        }

        private double BaseLoad(double t) => LoadBase + (5 * Math.Sin((2 * Math.PI * t / 1800) + LoadPhase));

        public double Load(double t)
        {
            var load = BaseLoad(t);
            if (Kind == FaultKind.Overload)
            {
                var start = BaseLoad(FaultStart);
                load = Math.Max(load, start + ((Capacity - start) * Progress(t)));
            }

            return load;
        }

        public double LatencyFactor(double t) => NuisanceFactor(t) * FaultLatencyFactor(t);

        private double FaultLatencyFactor(double t)
        {
            switch (Kind)
            {
                case FaultKind.LatencyRamp:
                    return 1 + (((LatencyTarget / BaseLatency) - 1) * Progress(t));
                case FaultKind.GrayFailure:
                    return t >= FaultStart ? GrayFactor : 1;
                case FaultKind.Overload:
                {
                    var rho0 = BaseLoad(FaultStart) / Capacity;
                    var rho = Math.Min(Load(t) / Capacity, 0.97);
                    return t >= FaultStart ? Math.Max(1, (1 - rho0) / (1 - rho)) : 1;
                }

                default:
                    return 1;
            }
        }

        public double ErrorRate(double t)
        {
            var background = BackgroundErrorRate;
            switch (Kind)
            {
                case FaultKind.ErrorRamp:
                    return Math.Min(1, background + ((ErrorTarget - background) * Progress(t)));
                case FaultKind.GrayFailure:
                    return t >= FaultStart ? 0.03 : background;
                case FaultKind.Overload:
                {
                    var rho = Load(t) / Capacity;
                    return rho > 1 ? Math.Min(0.9, 0.1 + (2 * (rho - 1))) : background;
                }

                default:
                    return background;
            }
        }

        public double Memory(double t)
            => Kind == FaultKind.GcPauses ? MemBase + ((0.9 - MemBase) * Math.Min(1.2, Progress(t))) : MemBase;
    }
}
