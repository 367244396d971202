using System.Buffers;
using System.Collections.Concurrent;
using System.Collections.Immutable;
using System.Net;
using Microsoft.AspNetCore.Connections;
using Relay.Clusters;
using Relay.Configuration;
using Relay.Hosting;
using Relay.L4;

namespace Relay.Echo.Splice;

/// <summary>A takeover connection on which the agent answered TAKEOVER_PREPARE for <see cref="Shadow"/>.</summary>
internal sealed record PreparedTakeover(ShadowLink Shadow, TakeoverConnection Connection);

/// <summary>The result of one TAKEOVER round: the agent's connection, or why none took over.</summary>
/// <remarks><paramref name="Tried"/>: the agent links whose spare connection the round used; <see cref="EchoManager.RefillSpares"/> replaces them.</remarks>
internal readonly record struct TakeoverResult(ConnectionContext? Upstream, ShadowLink? Shadow, string? Failure, long TailBytes, IReadOnlyList<AgentLink> Tried);

/// <summary>
/// Echo and splice for the whole relay: agent links per endpoint, echo sessions, shadow choice,
/// takeovers, and the triggers (primary failure, drain, migrate, notice, health).
/// </summary>
public sealed class EchoManager : IAsyncDisposable
{
    private readonly RelayRuntime _runtime;
    private readonly UpstreamConnector _connector;
    private readonly ILoggerFactory _loggerFactory;
    private readonly ILogger _logger;
    private readonly ConcurrentDictionary<string, AgentLink> _links = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<long, SplicedSession> _sessions = new();
    private readonly ConcurrentDictionary<string, EchoPolicyConfig> _policyOverrides = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, DateTimeOffset> _notices = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, bool> _evacuating = new(StringComparer.Ordinal);
    private readonly object _applyLock = new();
    private readonly CancellationTokenSource _stop = new();
    private byte[] _psk = [];
    private Task? _watch;
    private int _splicePathCompiled;

    internal EchoManager(RelayRuntime runtime, UpstreamConnector connector, ILoggerFactory loggerFactory)
    {
        _runtime = runtime;
        _connector = connector;
        _loggerFactory = loggerFactory;
        _logger = loggerFactory.CreateLogger<EchoManager>();
        Metrics = new EchoMetrics(runtime.Metrics);
        // An id, not a secret (the control channel is authenticated by the key file): the shared
        // generator keeps OpenSSL out of a relay that echoes nothing.
        RelayId = Random.Shared.NextInt64(1, long.MaxValue);
        runtime.Metrics.Registry.AddBeforeCollectCallback(UpdateGauges);
    }

    internal EchoMetrics Metrics { get; }

    internal TimeProvider Time => _runtime.TimeProvider;

    /// <summary>This relay process's id in its agents' registries.</summary>
    public long RelayId { get; }

    internal ReadOnlyMemory<byte> Psk => _psk;

    internal ImmutableArray<IPAddress> PathAddresses => _runtime.Snapshot.Config.Echo.Paths;

    /// <summary>
    /// Test hook, null in production: creates the UDP socket of echo path i, given (i, a placeholder
    /// remote that is re-aimed at the agent's path after HelloOk), instead of binding
    /// <c>echo.paths[i]</c> on port 0. The number of paths is still the number of <c>echo.paths</c>.
    /// Set it before the relay starts; tests use it to put the paths in network namespaces.
    /// </summary>
    internal Func<int, IPEndPoint, Transport.Sockets.UdpDatagramSocket>? PathSocketFactory { get; set; }

    /// <summary>
    /// Test hook: (path index, the bound and aimed path socket) → the socket the echo channel uses on
    /// that path, e.g. one that also records or repeats datagrams. Applied just before the channel
    /// starts; null hands the channel the UDP sockets themselves.
    /// </summary>
    internal Func<int, Transport.Sockets.IDatagramSocket, Transport.Sockets.IDatagramSocket>? PathSocketWrapper { get; set; }

    /// <summary>
    /// Whether an endpoint whose active health check turns unhealthy is evacuated here (the fallback).
    /// The prediction service turns it off when it drives migrations; shadow top-up goes on either way.
    /// </summary>
    internal bool HealthEvacuation { get; set; } = true;

    /// <summary>True once a pre-shared key is loaded: echo routes echo, agents are reachable.</summary>
    public bool Enabled => _psk.Length > 0;

    /// <summary>
    /// Loads the pre-shared key when a route echoes (the error names the key when it is missing or
    /// short) and connects to every endpoint's agent.
    /// </summary>
    public IReadOnlyList<string> Start(RelayConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        var errors = new List<string>();
        var needsKey = config.Routes.Values.Any(r => r.Echo is not null) || config.Clusters.Values.Any(c => c.Endpoints.Values.Any(e => e.Agent is not null));
        if (needsKey)
        {
            var key = LoadPsk(config.Echo, out var problem);
            if (key is null)
            {
                if (config.Routes.Values.Any(r => r.Echo is not null))
                {
                    errors.Add(problem!);
                    return errors;
                }

                _logger.LogWarning("Endpoints name agents but no route echoes and no pre-shared key is set ({Problem}); agents are not contacted", problem);
                return errors;
            }

            _psk = key;
        }

        Apply(config);
        _watch = Task.Run(() => WatchHealthAsync(_stop.Token));
        return errors;
    }

    /// <summary>Reads the key from echo.pskFile or its environment variable.</summary>
    public static byte[]? LoadPsk(EchoConfig echo, out string? problem)
    {
        ArgumentNullException.ThrowIfNull(echo);
        byte[] key;
        string source;
        if (echo.PskFile is { } file)
        {
            source = $"echo.pskFile ({file})";
            try
            {
                key = File.ReadAllBytes(file);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                problem = $"{source}: cannot read the pre-shared key: {ex.Message}";
                return null;
            }
        }
        else
        {
            source = $"echo.pskEnvironmentVariable ({echo.PskEnvironmentVariable})";
            var text = Environment.GetEnvironmentVariable(echo.PskEnvironmentVariable);
            if (string.IsNullOrEmpty(text))
            {
                problem = $"echo.pskFile: a route echoes its sessions but no pre-shared key is set; write at least 32 random bytes to a file and name it in echo.pskFile, or set {echo.PskEnvironmentVariable}";
                return null;
            }

            key = System.Text.Encoding.UTF8.GetBytes(text);
        }

        var length = key.Length;
        while (length > 0 && key[length - 1] is (byte)'\n' or (byte)'\r')
        {
            length--;
        }

        key = key[..length];
        if (key.Length < Transport.Crypto.TransportKeys.MinPskBytes)
        {
            problem = $"{source}: the pre-shared key has {key.Length} bytes; it needs at least {Transport.Crypto.TransportKeys.MinPskBytes}";
            return null;
        }

        problem = null;
        return key;
    }

    /// <summary>Follows a configuration reload: links for new agents, none for removed ones.</summary>
    public void Apply(RelayConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        if (!Enabled)
        {
            return;
        }

        if (config.Routes.Values.Any(r => r.Echo is not null) && Interlocked.Exchange(ref _splicePathCompiled, 1) == 0)
        {
            // Once, when the first echoed route appears (at start or on a reload): a failover should
            // not be the first caller of the code it runs.
            _ = CodeWarmup.StartInBackground(
                (methods, took) => SpliceLog.SplicePathCompiled(_logger, methods, took.TotalMilliseconds),
                typeof(SplicedSession), typeof(EchoManager), typeof(AgentLink), typeof(TakeoverConnection), typeof(EchoSession),
                typeof(ShadowLink), typeof(ShadowSessionTracker), typeof(EchoWire), typeof(UpstreamConnection), typeof(UpstreamConnector),
                typeof(Relay.Transport.Control.ControlChannel), typeof(SpliceLog));
        }

        lock (_applyLock)
        {
            var wanted = new Dictionary<string, (EndpointState Endpoint, IPEndPoint Agent)>(StringComparer.Ordinal);
            foreach (var cluster in _runtime.Snapshot.Clusters.Values)
            {
                foreach (var endpoint in cluster.Endpoints)
                {
                    if (endpoint.Config.Agent is { } agent)
                    {
                        wanted[endpoint.Id] = (endpoint, agent);
                    }
                }
            }

            foreach (var (id, link) in _links)
            {
                if (!wanted.TryGetValue(id, out var want) || !want.Agent.Equals(link.Control) || !ReferenceEquals(want.Endpoint, link.Endpoint))
                {
                    _links.TryRemove(id, out _);
                    _ = link.DisposeAsync().AsTask();
                }
            }

            foreach (var (id, (endpoint, agent)) in wanted)
            {
                if (!_links.ContainsKey(id))
                {
                    var link = new AgentLink(this, endpoint, agent, _loggerFactory.CreateLogger("Relay.Echo.AgentLink"));
                    _links[id] = link;
                    link.Start();
                }
            }
        }
    }

    /// <summary>The highest redundancy floor among the routes' echo policies (at least 0).</summary>
    internal Relay.Transport.Multipath.PathLossParity PathLossParity => _runtime.Snapshot.Config.Echo.PathLossParity;

    internal int RedundancyFloor => _runtime.Snapshot.Config.Routes.Values.Select(r => PolicyFor(r)?.RedundancyFloor ?? 0).DefaultIfEmpty(0).Max();

    /// <summary>The route's echo policy now: the API's override, or the file's.</summary>
    public EchoPolicyConfig? PolicyFor(RouteConfig route)
    {
        ArgumentNullException.ThrowIfNull(route);
        return _policyOverrides.TryGetValue(route.Name, out var policy) ? policy : route.Echo;
    }

    /// <summary>Replaces a route's echo policy for sessions that start from now on (until the relay restarts).</summary>
    public void SetPolicy(string route, EchoPolicyConfig policy) => _policyOverrides[route] = policy;

    internal IEnumerable<AgentLink> Links => _links.Values;

    internal IEnumerable<SplicedSession> Sessions => _sessions.Values;

    internal ILogger Logger => _logger;

    internal bool TryGetSession(long id, out SplicedSession session) => _sessions.TryGetValue(id, out session!);

    public DateTimeOffset? NoticeFor(string endpoint) => _notices.TryGetValue(endpoint, out var at) ? at : null;

    // ---- sessions ----

    /// <summary>Runs an echoed session to its end: shadows, pumps, splices.</summary>
    internal async Task RunSessionAsync(L4Session session, RouteConfig route, EchoPolicyConfig policy, ConnectionContext upstream, EndpointState endpoint)
    {
        var maxMessage = ConfigValidator.EffectiveMaxMessageBytes(policy, _runtime.Snapshot.Config.Tuning);
        using var echo = new EchoSession(session.Id, route.Name, policy, maxMessage, endpoint.Id);
        var spliced = new SplicedSession(this, session, echo, upstream, endpoint);
        _sessions[session.Id] = spliced;
        try
        {
            EnsureShadows(spliced);
            await spliced.RunAsync().ConfigureAwait(false);
        }
        finally
        {
            _sessions.TryRemove(session.Id, out _);
            echo.End();

            // Give the links a moment to send Close before the log's memory goes back to the pool.
            await Task.Delay(TimeSpan.FromMilliseconds(5), Time).ConfigureAwait(false);
        }
    }

    /// <summary>Tops a session's shadows up to its policy, from endpoints with a connected agent.</summary>
    internal void EnsureShadows(SplicedSession spliced)
    {
        lock (spliced.Echo.ShadowGate)
        {
            EnsureShadowsLocked(spliced);
        }
    }

    private void EnsureShadowsLocked(SplicedSession spliced)
    {
        var echo = spliced.Echo;
        if (!Enabled || echo.Ended || spliced.IsEnding)
        {
            return;
        }

        var current = echo.Shadows;
        var live = current.Count(s => s.DetachedReason is null && s.State is not (ShadowState.Diverged or ShadowState.Lost));
        var need = echo.Policy.Shadows - live;
        if (need <= 0)
        {
            return;
        }

        if (!_runtime.Snapshot.Config.Routes.TryGetValue(echo.Route, out var route) || !_runtime.Snapshot.Clusters.TryGetValue(route.Cluster, out var cluster))
        {
            return;
        }

        var primary = spliced.Endpoint;
        var now = Time.GetTimestamp();
        var candidates = new List<(AgentLink Link, EndpointState Endpoint)>();
        foreach (var endpoint in cluster.Endpoints)
        {
            if (ReferenceEquals(endpoint, primary) || echo.HasUsed(endpoint.Id) || !endpoint.IsAvailable(now) || _notices.ContainsKey(endpoint.Id)
                || !_links.TryGetValue(endpoint.Id, out var link) || !link.Connected
                || current.Any(s => ReferenceEquals(s.Endpoint, endpoint)))
            {
                continue;
            }

            candidates.Add((link, endpoint));
        }

        var diverse = echo.Policy.ZoneDiversity;
        var ordered = candidates
            .OrderBy(c => diverse && SameZone(c.Endpoint.Config, primary.Config) ? 1 : 0)
            .ThenBy(c => diverse && SameRegion(c.Endpoint.Config, primary.Config) ? 1 : 0)
            .ThenByDescending(c => Math.Round(c.Endpoint.PredictedScore ?? 1, 1))
            .ThenBy(c => c.Link.ShadowCount + c.Endpoint.ActiveSessions)
            .ThenBy(c => c.Link.LastHeartbeat?.CpuPercent ?? 0)
            .ThenBy(c => c.Link.RttMs ?? double.MaxValue)
            .ThenBy(c => c.Endpoint.Id, StringComparer.Ordinal);
        foreach (var (link, endpoint) in ordered)
        {
            if (need == 0)
            {
                break;
            }

            var shadow = echo.TryAddShadow(link, endpoint, Time, out var reason);
            if (shadow is null)
            {
                if (echo.NoShadowReasonChanged(reason ?? "unknown"))
                {
                    SpliceLog.NoNewShadow(_logger, echo.Id, reason ?? "unknown");
                }

                continue;
            }

            if (!link.Register(shadow))
            {
                echo.RemoveShadow(shadow, "the agent already holds a shadow of this session");
                continue;
            }

            need--;
        }

        if (need > 0)
        {
            var why = $"{need} of {echo.Policy.Shadows} shadow(s) missing: no other endpoint of cluster {cluster.Name} is available with a connected agent{(echo.Policy.StateScope == EchoStateScope.Backend ? " and has not served this session (stateScope backend)" : "")}";
            if (echo.NoShadowReasonChanged(why))
            {
                SpliceLog.NoNewShadow(_logger, echo.Id, why);
            }
        }
    }

    private static bool SameZone(EndpointConfig a, EndpointConfig b) =>
        a.Zone is not null && string.Equals(a.Zone, b.Zone, StringComparison.Ordinal) && string.Equals(a.Region, b.Region, StringComparison.Ordinal);

    private static bool SameRegion(EndpointConfig a, EndpointConfig b) =>
        a.Region is not null && string.Equals(a.Region, b.Region, StringComparison.Ordinal);

    internal void OnAgentConnected(AgentLink link)
    {
        foreach (var (_, spliced) in _sessions)
        {
            EnsureShadows(spliced);
        }
    }

    internal void ReportChange(ShadowLink shadow, ShadowStateChange? change)
    {
        if (change is not { } c)
        {
            return;
        }

        SpliceLog.ShadowStateChanged(_logger, shadow.Session.Id, shadow.Endpoint.Id, c.From, c.To, c.Reason);
        Metrics.ShadowTransitions.WithLabels(shadow.Session.Route, c.To.ToString()).Inc();
        if (c.To is ShadowState.Diverged)
        {
            // A diverged shadow never takes over; make room for another.
            DropShadow(shadow, c.Reason);
        }
    }

    internal void DropShadow(ShadowLink shadow, string reason)
    {
        shadow.Session.RemoveShadow(shadow, reason);
        if (_sessions.TryGetValue(shadow.Session.Id, out var spliced))
        {
            _ = Task.Run(() => EnsureShadows(spliced));
        }
    }

    // ---- splice ----

    /// <summary>The Ready shadows a takeover may use (only the target's, when given), best first.</summary>
    private List<ShadowLink> TakeoverCandidates(EchoSession echo, EndpointState? target)
    {
        var now = Time.GetTimestamp();
        return echo.Shadows
            .Where(s => s.DetachedReason is null && s.State == ShadowState.Ready && s.Agent.Connected && (target is null || ReferenceEquals(s.Endpoint, target)))
            .OrderBy(s => s.Endpoint.IsAvailable(now) && !_notices.ContainsKey(s.Endpoint.Id) ? 0 : 1)
            .ThenBy(s => s.Snapshot().LagBytes)
            .ThenBy(s => s.Agent.RttMs ?? double.MaxValue)
            .ToList();
    }

    /// <summary>
    /// Before a planned splice pauses the session: a TAKEOVER_PREPARE to the best candidate's agent on a
    /// takeover connection, answered once the agent has checked that it can take the session. Returns
    /// that connection, or null (no candidate, or the agent did not agree: the splice then runs as
    /// without it, and the TAKEOVER reports why).
    /// </summary>
    /// <remarks>
    /// The round trip is spent while the session still flows. It wakes the agent's threads and CPU,
    /// and the TAKEOVER that follows within a few tens of microseconds finds them awake: on this
    /// project's VM an idle vCPU takes 100-250 µs to wake for a loopback packet (22 µs round trip
    /// between two busy CPUs, 166 µs when the receiving one idled for 2 ms), and that wake-up was
    /// most of a planned splice's blackout. Busy-waiting for the TAKEOVER on the agent (or for the OK
    /// on the relay) was measured too and not kept: with relay and agent on two shared cores it made
    /// the p90 blackout worse (docs/benchmarks.md).
    /// </remarks>
    internal async Task<PreparedTakeover?> PrepareTakeoverAsync(SplicedSession spliced, EndpointState? target)
    {
        var echo = spliced.Echo;
        var candidates = TakeoverCandidates(echo, target);
        if (candidates.Count == 0)
        {
            return null;
        }

        var shadow = candidates[0];
        using var timeout = new CancellationTokenSource(_runtime.Snapshot.Config.Echo.TakeoverTimeout);
        TakeoverConnection? connection = null;
        try
        {
            connection = await shadow.Agent.TakeTakeoverConnectionAsync(timeout.Token).ConfigureAwait(false);
            await connection.Control.SendAsync(EchoWire.TakeoverPrepare(RelayId, echo.Id), timeout.Token).ConfigureAwait(false);
            var answer = await connection.Control.ReceiveAsync(timeout.Token).ConfigureAwait(false);
            if (answer is not null && EchoWire.IsTakeoverPrepared(answer))
            {
                return new PreparedTakeover(shadow, connection);
            }

            SpliceLog.PrepareDeclined(_logger, echo.Id, shadow.Endpoint.Id, DescribeRefusal(answer));
        }
        catch (Exception ex) when (IsTakeoverConnectionFailure(ex))
        {
            SpliceLog.PrepareDeclined(_logger, echo.Id, shadow.Endpoint.Id, ex.Message);
        }

        if (connection is not null)
        {
            await connection.DisposeAsync().ConfigureAwait(false);
        }

        shadow.Agent.RefillSpareLater();
        return null;
    }

    /// <summary>TAKEOVER on the best Ready shadow (or the target), then the next; the pumps are paused.</summary>
    internal async Task<TakeoverResult> TakeoverAsync(SplicedSession spliced, EndpointState? target, SpliceTrigger trigger, PreparedTakeover? prepared)
    {
        var echo = spliced.Echo;
        var shadows = echo.Shadows;
        var candidates = TakeoverCandidates(echo, target);
        var tried = new List<AgentLink>(candidates.Count + 1);
        if (prepared is not null && candidates.Remove(prepared.Shadow))
        {
            // The prepared agent is awake and expects this session: try it first.
            candidates.Insert(0, prepared.Shadow);
        }
        else if (prepared is not null)
        {
            // Its shadow is no longer a candidate (it left Ready since): the connection goes unused.
            await prepared.Connection.DisposeAsync().ConfigureAwait(false);
            tried.Add(prepared.Shadow.Agent);
            prepared = null;
        }

        if (candidates.Count == 0)
        {
            var states = shadows.Length == 0 ? "the session has no shadow" : "no Ready shadow (" + string.Join(", ", shadows.Select(s => $"{s.Endpoint.Id}: {s.State}, {s.Snapshot().Reason}")) + ")";
            if (target is not null)
            {
                states = $"no Ready shadow on {target.Id}; {states}";
            }

            return new TakeoverResult(null, null, states, 0, tried);
        }

        var failures = new List<string>();
        foreach (var shadow in candidates)
        {
            tried.Add(shadow.Agent);
            var connection = ReferenceEquals(shadow, prepared?.Shadow) ? prepared!.Connection : null;
            var (upstream, failure, tail) = await TryTakeoverAsync(echo, shadow, connection).ConfigureAwait(false);
            if (upstream is not null)
            {
                echo.RemoveShadow(shadow, "it took the session over");
                return new TakeoverResult(upstream, shadow, null, tail, tried);
            }

            SpliceLog.TakeoverFailed(_logger, echo.Id, shadow.Endpoint.Id, failure!);
            failures.Add($"{shadow.Endpoint.Id}: {failure}");
            echo.RemoveShadow(shadow, $"its takeover failed: {failure}");
        }

        return new TakeoverResult(null, null, string.Join("; ", failures), 0, tried);
    }

    /// <summary>Opens new spare takeover connections for the links a takeover round used (after the session resumed).</summary>
    internal static void RefillSpares(TakeoverResult result)
    {
        foreach (var link in result.Tried)
        {
            link.RefillSpareLater();
        }
    }

    private async Task<(ConnectionContext? Upstream, string? Failure, long TailBytes)> TryTakeoverAsync(EchoSession echo, ShadowLink shadow, TakeoverConnection? prepared)
    {
        var timeoutAfter = _runtime.Snapshot.Config.Echo.TakeoverTimeout;
        using var timeout = new CancellationTokenSource(timeoutAfter);
        var connection = prepared;
        var log = echo.Log;
        try
        {
            connection ??= await shadow.Agent.TakeTakeoverConnectionAsync(timeout.Token).ConfigureAwait(false);
            var tailStart = Math.Min(log.Acked(shadow.Slot), log.Length);
            if (tailStart < log.Start)
            {
                Metrics.Takeovers.WithLabels(shadow.Endpoint.Id, "trimmed").Inc();
                await connection.DisposeAsync().ConfigureAwait(false);
                return (null, $"the echo log no longer holds input from offset {tailStart}", 0);
            }

            var inOffset = log.Length;
            var request = new TakeoverRequest(RelayId, echo.Id, inOffset, echo.Delivered, echo.DeliveredIsMessages, tailStart, inOffset - tailStart);
            await connection.Control.SendAsync(EchoWire.Takeover(request), timeout.Token).ConfigureAwait(false);
            if (request.TailLength > 0)
            {
                var writer = new ArrayBufferWriter<byte>((int)Math.Min(request.TailLength, EchoWire.MaxTailChunkBytes));
                for (var at = tailStart; at < inOffset; at += EchoWire.MaxTailChunkBytes)
                {
                    writer.ResetWrittenCount();
                    if (!log.WriteTo(at, Math.Min(inOffset, at + EchoWire.MaxTailChunkBytes), writer))
                    {
                        await connection.DisposeAsync().ConfigureAwait(false);
                        return (null, $"the echo log no longer holds input from offset {at}", 0);
                    }

                    await connection.Control.SendAsync(EchoWire.TakeoverTail(writer.WrittenSpan), timeout.Token).ConfigureAwait(false);
                }
            }

            var answer = await connection.Control.ReceiveAsync(timeout.Token).ConfigureAwait(false);
            if (answer is not null && EchoWire.TryReadTakeoverOk(answer, out _))
            {
                // From here the socket carries the session's bytes, raw, as a direct upstream would.
                var upstream = _connector.Adopt(connection.Socket);
                return (upstream, null, request.TailLength);
            }

            var why = DescribeRefusal(answer);
            Metrics.Takeovers.WithLabels(shadow.Endpoint.Id, "refused").Inc();
            await connection.DisposeAsync().ConfigureAwait(false);
            return (null, why, 0);
        }
        catch (Exception ex) when (IsTakeoverConnectionFailure(ex))
        {
            var timedOut = ex is OperationCanceledException;
            Metrics.Takeovers.WithLabels(shadow.Endpoint.Id, timedOut ? "timeout" : "error").Inc();
            if (connection is not null)
            {
                await connection.DisposeAsync().ConfigureAwait(false);
            }

            return (null, timedOut ? $"no answer within {DurationParser.Format(timeoutAfter)}" : ex.Message, 0);
        }
    }

    /// <summary>What a takeover connection's failure looks like: the attempt fails, the session carries on.</summary>
    private static bool IsTakeoverConnectionFailure(Exception ex) =>
        ex is OperationCanceledException or IOException or System.Net.Sockets.SocketException or System.Security.Authentication.AuthenticationException or InvalidDataException or ObjectDisposedException;

    /// <summary>Why an agent's answer on a takeover connection was not the one asked for.</summary>
    private static string DescribeRefusal(byte[]? answer) =>
        answer is null ? "the agent closed the connection" : EchoWire.TryReadRefused(answer, out var refused) ? $"refused: {refused}" : "the agent's answer is malformed";

    internal void OnSpliced(SplicedSession spliced, EndpointState from, ShadowLink shadow, SpliceTrigger trigger, double blackoutMs, long tailBytes)
    {
        var echo = spliced.Echo;
        Metrics.Splices.WithLabels(echo.Route, Label(trigger), "spliced").Inc();
        Metrics.Blackout.WithLabels(echo.Route).Observe(blackoutMs / 1000);
        echo.AddSplice(new SpliceRecord(Time.GetUtcNow(), from.Id, shadow.Endpoint.Id, trigger, "spliced", blackoutMs, null));
        SpliceLog.Spliced(_logger, echo.Id, from.Id, shadow.Endpoint.Id, trigger, blackoutMs, echo.Log.Length, echo.Delivered, tailBytes);
        _ = Task.Run(() => EnsureShadows(spliced));
    }

    internal void OnRolledBack(SplicedSession spliced, EndpointState from, SpliceTrigger trigger, double blackoutMs, string reason)
    {
        var echo = spliced.Echo;
        Metrics.Splices.WithLabels(echo.Route, Label(trigger), "rolled_back").Inc();
        Metrics.Blackout.WithLabels(echo.Route).Observe(blackoutMs / 1000);
        echo.AddSplice(new SpliceRecord(Time.GetUtcNow(), from.Id, null, trigger, "rolled_back", blackoutMs, reason));
        SpliceLog.RolledBack(_logger, echo.Id, from.Id, trigger, blackoutMs, reason);
    }

    internal void OnLost(SplicedSession spliced, EndpointState from, RelayError failure, SpliceTrigger trigger, double blackoutMs, string reason)
    {
        var echo = spliced.Echo;
        Metrics.Splices.WithLabels(echo.Route, Label(trigger), "lost").Inc();
        echo.AddSplice(new SpliceRecord(Time.GetUtcNow(), from.Id, null, trigger, "lost", blackoutMs, reason));
        Metrics.SessionsLost.WithLabels(echo.Route).Inc();
        SpliceLog.SessionLost(_logger, echo.Id, from.Id, failure, reason);
    }

    private static string Label(SpliceTrigger trigger) => trigger switch
    {
        SpliceTrigger.PrimaryFailure => "primary_failure",
        SpliceTrigger.Drain => "drain",
        SpliceTrigger.Migrate => "migrate",
        SpliceTrigger.Notice => "notice",
        _ => "health",
    };

    // ---- triggers ----

    /// <summary>Moves one session (to <paramref name="target"/> when given); the answer says where it went or why not.</summary>
    public async Task<SpliceOutcome?> MigrateAsync(long sessionId, string? target, SpliceTrigger trigger = SpliceTrigger.Migrate)
    {
        if (!_sessions.TryGetValue(sessionId, out var spliced))
        {
            return null;
        }

        EndpointState? targetEndpoint = null;
        if (target is not null)
        {
            targetEndpoint = _runtime.FindEndpoint(target);
            if (targetEndpoint is null)
            {
                return SpliceOutcome.NotRun(spliced.Endpoint.Id, $"endpoint \"{target}\" does not exist");
            }
        }

        return await spliced.SpliceAsync(trigger, targetEndpoint).ConfigureAwait(false);
    }

    /// <summary>Echoed sessions on <paramref name="endpoint"/> now.</summary>
    public int SessionsOn(string endpoint) => _sessions.Values.Count(s => s.Endpoint.Id == endpoint);

    /// <summary>Starts moving every echoed session off an endpoint, a few at a time; returns how many it will try.</summary>
    public int StartEvacuation(EndpointState endpoint, SpliceTrigger trigger)
    {
        ArgumentNullException.ThrowIfNull(endpoint);
        var sessions = _sessions.Values.Where(s => ReferenceEquals(s.Endpoint, endpoint)).ToList();
        if (sessions.Count == 0 || !_evacuating.TryAdd(endpoint.Id, true))
        {
            return sessions.Count;
        }

        SpliceLog.Evacuating(_logger, endpoint.Id, sessions.Count, trigger);
        _ = Task.Run(async () =>
        {
            var moved = 0;
            var failed = 0;
            try
            {
                using var gate = new SemaphoreSlim(_runtime.Snapshot.Config.Echo.MaxConcurrentMigrations);
                var tasks = sessions.Select(async spliced =>
                {
                    await gate.WaitAsync().ConfigureAwait(false);
                    try
                    {
                        var outcome = await spliced.SpliceAsync(trigger, null).ConfigureAwait(false);
                        if (outcome.Spliced)
                        {
                            Interlocked.Increment(ref moved);
                        }
                        else
                        {
                            Interlocked.Increment(ref failed);
                        }
                    }
                    finally
                    {
                        gate.Release();
                    }
                });
                await Task.WhenAll(tasks).ConfigureAwait(false);
            }
            finally
            {
                _evacuating.TryRemove(endpoint.Id, out _);
                SpliceLog.Evacuated(_logger, endpoint.Id, moved, failed, trigger);
            }
        });
        return sessions.Count;
    }

    /// <summary>An interruption notice: the endpoint takes no new sessions or shadows, and its sessions move now.</summary>
    public int Notice(EndpointState endpoint, DateTimeOffset at)
    {
        ArgumentNullException.ThrowIfNull(endpoint);
        _notices[endpoint.Id] = at;
        endpoint.Draining = true;
        SpliceLog.InterruptionNotice(_logger, endpoint.Id, at);
        return StartEvacuation(endpoint, SpliceTrigger.Notice);
    }

    /// <summary>Moves sessions off endpoints whose active health check fails (until Relay.Predict's recommendations drive this).</summary>
    private async Task WatchHealthAsync(CancellationToken cancellationToken)
    {
        var unhealthy = new HashSet<string>(StringComparer.Ordinal);
        try
        {
            while (!cancellationToken.IsCancellationRequested)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(250), Time, cancellationToken).ConfigureAwait(false);
                var now = Time.GetTimestamp();
                foreach (var cluster in _runtime.Snapshot.Clusters.Values)
                {
                    foreach (var endpoint in cluster.Endpoints)
                    {
                        var healthy = endpoint.Health(now) == EndpointHealth.Healthy;
                        if (!healthy && unhealthy.Add(endpoint.Id) && HealthEvacuation)
                        {
                            StartEvacuation(endpoint, SpliceTrigger.Health);
                        }
                        else if (healthy)
                        {
                            unhealthy.Remove(endpoint.Id);
                        }
                    }
                }

                foreach (var (_, spliced) in _sessions)
                {
                    if (spliced.Echo.ShadowCount < spliced.Echo.Policy.Shadows && !spliced.IsSplicing)
                    {
                        EnsureShadows(spliced);
                    }
                }
            }
        }
        catch (OperationCanceledException)
        {
            // Stopping.
        }
    }

    private void UpdateGauges()
    {
        var counts = new Dictionary<(string Route, ShadowState State), int>();
        foreach (var (_, spliced) in _sessions)
        {
            foreach (var shadow in spliced.Echo.Shadows)
            {
                var key = (spliced.Echo.Route, shadow.State);
                counts[key] = counts.GetValueOrDefault(key) + 1;
            }
        }

        foreach (var route in _runtime.Snapshot.Config.Routes.Values.Where(r => PolicyFor(r) is not null))
        {
            foreach (var state in Enum.GetValues<ShadowState>())
            {
                Metrics.Shadows.WithLabels(route.Name, state.ToString()).Set(counts.GetValueOrDefault((route.Name, state)));
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        if (_watch is not null)
        {
            await _watch.ConfigureAwait(false);
        }

        foreach (var (_, link) in _links)
        {
            await link.DisposeAsync().ConfigureAwait(false);
        }

        _links.Clear();
        _stop.Dispose();
    }
}
