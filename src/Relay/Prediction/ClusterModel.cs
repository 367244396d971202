using Relay.Clusters;
using Relay.Configuration;
using Relay.Predict.Planning;
using Relay.Predict.Stability;

namespace Relay.Prediction;

/// <summary>
/// One cluster's predictor, session table and planner, with the endpoint index (the predictor's
/// endpoint i is <see cref="Endpoints"/>[i]) and what was fed last. Used under the service's lock.
/// </summary>
internal sealed class ClusterModel
{
    private const int InitialSessions = 256;
    private readonly PredictorOptions _options;
    private readonly Dictionary<long, int> _slots = [];
    private readonly HashSet<long> _seen = [];

    public ClusterModel(ClusterState cluster, PredictorOptions options, MigrationPlannerOptions plannerOptions, PredictionConfig config, int moveParallelism)
    {
        _options = options;
        Name = cluster.Name;
        Endpoints = [.. cluster.Endpoints];
        Count = Endpoints.Length;
        Ids = [.. Endpoints.Select(e => e.Id)];
        Index = new Dictionary<string, int>(StringComparer.Ordinal);
        Predictor = new ClusterPredictor(options);
        Planner = new MigrationPlanner(plannerOptions);
        Sessions = new SessionTable(InitialSessions, options);
        SessionIds = new long[InitialSessions];
        Echoed = new EchoedSession[InitialSessions];
        LastStarted = new long[Count];
        LastFailures = new long[Count];
        LastRtt = new double[Count];
        LastHeartbeat = new DateTimeOffset[Count];
        LastNotice = new DateTimeOffset?[Count];
        Evacuating = new bool[Count];
        var zones = new Dictionary<string, int>(StringComparer.Ordinal);
        var limits = new EndpointLimits
        {
            Capacity = config.EndpointCapacity,
            CpuLimit = config.CpuLimit,
            MoveParallelism = Math.Max(1, moveParallelism),
        };
        for (var i = 0; i < Count; i++)
        {
            var endpoint = Endpoints[i];
            var zoneKey = $"{endpoint.Config.Region}/{endpoint.Config.Zone}";
            if (!zones.TryGetValue(zoneKey, out var zone))
            {
                zone = zones.Count;
                zones[zoneKey] = zone;
            }

            Index[endpoint.Id] = Predictor.AddEndpoint(zone, limits);
            LastStarted[i] = endpoint.TotalSessions;
            LastFailures[i] = endpoint.ConnectFailures + endpoint.Resets;
            LastRtt[i] = double.NaN;
        }
    }

    public string Name { get; }

    public EndpointState[] Endpoints { get; }

    public string[] Ids { get; }

    public int Count { get; }

    public Dictionary<string, int> Index { get; }

    public ClusterPredictor Predictor { get; }

    public MigrationPlanner Planner { get; }

    public SessionTable Sessions { get; private set; }

    /// <summary>Relay session id per session-table slot.</summary>
    public long[] SessionIds { get; private set; }

    /// <summary>The session as last collected, per slot (its Ready shadows).</summary>
    public EchoedSession[] Echoed { get; private set; }

    public long[] LastStarted { get; }

    public long[] LastFailures { get; }

    public double[] LastRtt { get; }

    public DateTimeOffset[] LastHeartbeat { get; }

    public DateTimeOffset?[] LastNotice { get; }

    public bool[] Evacuating { get; }

    public bool FailOpen { get; set; }

    public long RateLimited { get; set; }

    /// <summary>Same endpoints (the same live states, in the same order) as <paramref name="cluster"/>.</summary>
    public bool Matches(ClusterState cluster) =>
        cluster.Endpoints.Length == Count && cluster.Endpoints.Select((e, i) => ReferenceEquals(e, Endpoints[i])).All(same => same);

    public void ClearFlags()
    {
        foreach (var endpoint in Endpoints)
        {
            endpoint.PredictedUnstable = false;
        }
    }

    /// <summary>Adds new sessions, records moves (after a splice), drops ended ones.</summary>
    public void SyncSessions(IEnumerable<EchoedSession> sessions)
    {
        _seen.Clear();
        foreach (var session in sessions)
        {
            if (!Index.TryGetValue(session.Endpoint, out var endpoint))
            {
                continue;
            }

            _seen.Add(session.Id);
            if (_slots.TryGetValue(session.Id, out var slot))
            {
                if (Sessions.GetEndpoint(slot) != endpoint)
                {
                    Sessions.Move(slot, endpoint);
                }

                Echoed[slot] = session;
                continue;
            }

            slot = Sessions.Add(endpoint);
            if (slot < 0)
            {
                Grow();
                slot = Sessions.Add(endpoint);
            }

            _slots[session.Id] = slot;
            SessionIds[slot] = session.Id;
            Echoed[slot] = session;
        }

        foreach (var (id, slot) in _slots.Where(p => !_seen.Contains(p.Key)).ToList())
        {
            Sessions.Remove(slot);
            _slots.Remove(id);
        }
    }

    /// <summary>A bigger table; sessions keep their endpoints (their own trends start again).</summary>
    private void Grow()
    {
        var capacity = Sessions.Capacity * 2;
        var table = new SessionTable(capacity, _options);
        var ids = new long[capacity];
        var echoed = new EchoedSession[capacity];
        foreach (var (id, old) in _slots.ToList())
        {
            var slot = table.Add(Sessions.GetEndpoint(old));
            _slots[id] = slot;
            ids[slot] = id;
            echoed[slot] = Echoed[old];
        }

        Sessions = table;
        SessionIds = ids;
        Echoed = echoed;
    }
}
