using System.Buffers.Text;
using System.Collections.Concurrent;
using System.Security.Cryptography;
using Relay.Clusters;
using Relay.Configuration;

namespace Relay.L7;

/// <summary>One L7 session: an affinity key and the endpoint its requests go to.</summary>
internal sealed class AffinitySession
{
    private EndpointState _endpoint;
    private long _lastUsedTimestamp;
    private long _requests;
    private int _moves;

    public AffinitySession(string key, EndpointState endpoint, DateTimeOffset startedAt, long timestamp)
    {
        Key = key;
        _endpoint = endpoint;
        StartedAt = startedAt;
        _lastUsedTimestamp = timestamp;
    }

    public string Key { get; }

    public DateTimeOffset StartedAt { get; }

    public EndpointState Endpoint => Volatile.Read(ref _endpoint);

    public long LastUsedTimestamp => Volatile.Read(ref _lastUsedTimestamp);

    public long Requests => Interlocked.Read(ref _requests);

    public int Moves => Volatile.Read(ref _moves);

    public void Touch(long timestamp)
    {
        Volatile.Write(ref _lastUsedTimestamp, timestamp);
        Interlocked.Increment(ref _requests);
    }

    /// <summary>Moves the session from <paramref name="from"/>; false when another request moved it first.</summary>
    public bool TryMove(EndpointState from, EndpointState to)
    {
        if (Interlocked.CompareExchange(ref _endpoint, to, from) != from)
        {
            return false;
        }

        Interlocked.Increment(ref _moves);
        return true;
    }
}

/// <summary>
/// The L7 sessions of one route, keyed by the affinity key. Bounded: past
/// <see cref="AffinityConfig.MaxSessions"/> a new key gets no affinity rather than more memory.
/// </summary>
internal sealed class AffinityTable
{
    /// <summary>Longer keys are not remembered (a client could otherwise make us hold big strings).</summary>
    public const int MaxKeyLength = 128;

    private readonly ConcurrentDictionary<string, AffinitySession> _sessions = new(StringComparer.Ordinal);
    private int _count;

    public AffinityTable(AffinityConfig config)
    {
        Config = config;
    }

    public AffinityConfig Config { get; set; }

    public int Count => Volatile.Read(ref _count);

    public IEnumerable<AffinitySession> Sessions => _sessions.Values;

    public static string NewKey()
    {
        Span<byte> bytes = stackalloc byte[16];
        RandomNumberGenerator.Fill(bytes);
        return Base64Url.EncodeToString(bytes);
    }

    public static bool IsAcceptableKey(string key)
    {
        if (key.Length is 0 or > MaxKeyLength)
        {
            return false;
        }

        foreach (var c in key)
        {
            if (c is < '!' or > '~' or ';' or ',')
            {
                return false;
            }
        }

        return true;
    }

    public bool TryGet(string key, out AffinitySession session) => _sessions.TryGetValue(key, out session!);

    /// <summary>Adds a session unless the table is full; returns the one that won a race for the key.</summary>
    public AffinitySession? TryAdd(string key, EndpointState endpoint, DateTimeOffset now, long timestamp)
    {
        if (Interlocked.Increment(ref _count) > Config.MaxSessions)
        {
            Interlocked.Decrement(ref _count);
            return null;
        }

        var session = new AffinitySession(key, endpoint, now, timestamp);
        var winner = _sessions.GetOrAdd(key, session);
        if (!ReferenceEquals(winner, session))
        {
            Interlocked.Decrement(ref _count);
        }

        return winner;
    }

    /// <summary>Forgets sessions idle for longer than the configured idle timeout; returns how many.</summary>
    public int Sweep(TimeProvider time, long now)
    {
        var removed = 0;
        var idle = Config.IdleTimeout;
        foreach (var (key, session) in _sessions)
        {
            if (time.GetElapsedTime(session.LastUsedTimestamp, now) >= idle && _sessions.TryRemove(new KeyValuePair<string, AffinitySession>(key, session)))
            {
                Interlocked.Decrement(ref _count);
                removed++;
            }
        }

        return removed;
    }
}
