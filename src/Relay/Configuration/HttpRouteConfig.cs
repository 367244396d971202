using System.Collections.Immutable;

namespace Relay.Configuration;

public enum RouteProtocol
{
    /// <summary>L4: bytes are relayed as they come (the default).</summary>
    Tcp,

    /// <summary>L7: HTTP/1.1 requests are proxied one by one with YARP's forwarder.</summary>
    Http,
}

public enum AffinityMode
{
    /// <summary>The relay issues a cookie holding the session key.</summary>
    Cookie,

    /// <summary>The client sends the session key in a request header.</summary>
    Header,
}

public enum MirrorMethods
{
    /// <summary>Every sampled request is mirrored.</summary>
    All,

    /// <summary>Only requests whose method is not idempotent (RFC 9110 9.2.2) are mirrored.</summary>
    NonIdempotent,
}

/// <summary>The keys only an <c>"protocol": "http"</c> route has.</summary>
public sealed record HttpRouteConfig
{
    public AffinityConfig? Affinity { get; init; }

    public MirrorConfig? Mirror { get; init; }

    public RetryConfig Retries { get; init; } = new();

    /// <summary>
    /// The request header whose presence makes a non-idempotent request safe to retry (the client
    /// promises the upstream deduplicates by it). Null: non-idempotent requests are never retried
    /// once they may have reached an endpoint.
    /// </summary>
    public string? IdempotencyKeyHeader { get; init; }

    /// <summary>How long one upstream attempt may stay silent. Defaults to 100 s (YARP's default).</summary>
    public TimeSpan RequestTimeout { get; init; } = RelayDefaults.HttpRequestTimeout;

    /// <summary>Request bodies up to this size are buffered so that a retry can resend them. Defaults to 64 KiB.</summary>
    public int MaxRetryBodyBytes { get; init; } = RelayDefaults.HttpMaxBufferedBodyBytes;
}

/// <summary>Session affinity: one key (cookie or header value) is one L7 session, pinned to an endpoint.</summary>
public sealed record AffinityConfig
{
    public AffinityMode Mode { get; init; } = AffinityMode.Cookie;

    /// <summary>The cookie or header name. Defaults to "relay-session" for a cookie and "X-Relay-Session" for a header.</summary>
    public required string Name { get; init; }

    /// <summary>A session unused for this long is forgotten. Defaults to 30 min.</summary>
    public TimeSpan IdleTimeout { get; init; } = RelayDefaults.AffinityIdleTimeout;

    /// <summary>Most sessions remembered per route; past it, new keys get no affinity. Defaults to 100,000.</summary>
    public int MaxSessions { get; init; } = RelayDefaults.AffinityMaxSessions;
}

/// <summary>Request mirroring to shadow endpoints, with response comparison.</summary>
public sealed record MirrorConfig
{
    /// <summary>Endpoint ids (of any cluster) that receive copies.</summary>
    public ImmutableArray<string> Shadows { get; init; } = [];

    /// <summary>Share of eligible requests mirrored, 0 to 100. Defaults to 100.</summary>
    public double Percent { get; init; } = 100;

    public MirrorMethods Methods { get; init; } = MirrorMethods.All;

    /// <summary>Requests with a bigger body are not mirrored; primary responses past it are digested unfiltered. Defaults to 64 KiB.</summary>
    public int MaxBodyBytes { get; init; } = RelayDefaults.HttpMaxBufferedBodyBytes;

    /// <summary>Header added to every copy so the shadow can tell it is shadow traffic. Defaults to "X-Relay-Shadow".</summary>
    public string Header { get; init; } = RelayDefaults.MirrorHeader;

    /// <summary>Copies waiting per shadow; a copy that finds the queue full is dropped and counted. Defaults to 1,024.</summary>
    public int QueueLength { get; init; } = RelayDefaults.MirrorQueueLength;

    /// <summary>Copies in flight per shadow. Defaults to 4.</summary>
    public int Concurrency { get; init; } = RelayDefaults.MirrorConcurrency;

    public CompareConfig Compare { get; init; } = new();

    public bool Equals(MirrorConfig? other) =>
        other is not null && Shadows.SequenceEqual(other.Shadows, StringComparer.Ordinal) && Percent.Equals(other.Percent) && Methods == other.Methods
        && MaxBodyBytes == other.MaxBodyBytes && Header == other.Header && QueueLength == other.QueueLength && Concurrency == other.Concurrency
        && Compare.Equals(other.Compare);

    public override int GetHashCode() => HashCode.Combine(Shadows.Length, Percent, Methods, MaxBodyBytes, QueueLength);
}

/// <summary>How primary and shadow responses are compared (Diffy-style noise filters).</summary>
public sealed record CompareConfig
{
    public bool Enabled { get; init; } = true;

    /// <summary>Response headers left out of the comparison, case-insensitive. Defaults to Date, Server and the framing headers.</summary>
    public ImmutableArray<string> IgnoreHeaders { get; init; } = RelayDefaults.CompareIgnoredHeaders;

    /// <summary>JSON property names removed at any depth before a JSON body is digested.</summary>
    public ImmutableArray<string> IgnoreJsonFields { get; init; } = [];

    /// <summary>Comparisons remembered per shadow. Defaults to 100.</summary>
    public int Window { get; init; } = 100;

    /// <summary>Comparisons needed before a shadow can be called consistent. Defaults to 10.</summary>
    public int MinSamples { get; init; } = 10;

    /// <summary>Mismatches tolerated in the window, in percent, for a consistent shadow. Defaults to 0.</summary>
    public double MaxMismatchPercent { get; init; }

    public bool Equals(CompareConfig? other) =>
        other is not null && Enabled == other.Enabled && IgnoreHeaders.SequenceEqual(other.IgnoreHeaders, StringComparer.OrdinalIgnoreCase)
        && IgnoreJsonFields.SequenceEqual(other.IgnoreJsonFields, StringComparer.Ordinal) && Window == other.Window && MinSamples == other.MinSamples
        && MaxMismatchPercent.Equals(other.MaxMismatchPercent);

    public override int GetHashCode() => HashCode.Combine(Enabled, Window, MinSamples, MaxMismatchPercent);
}

/// <summary>Retries of failed upstream attempts, bounded by a budget (Finagle/Envoy retry budgets).</summary>
public sealed record RetryConfig
{
    /// <summary>Tries per request including the first; 1 disables retries. Defaults to 3.</summary>
    public int Attempts { get; init; } = 3;

    /// <summary>Delay before the first retry; doubles each retry, with jitter. Defaults to 5 ms.</summary>
    public TimeSpan Backoff { get; init; } = RelayDefaults.RetryBackoff;

    /// <summary>The longest delay between retries. Defaults to 250 ms.</summary>
    public TimeSpan MaxBackoff { get; init; } = RelayDefaults.RetryMaxBackoff;

    /// <summary>Retries allowed as a share of requests, in percent. Defaults to 20.</summary>
    public double BudgetPercent { get; init; } = 20;

    /// <summary>Retries always allowed on top of the share (the bucket's size at start). Defaults to 10.</summary>
    public int MinBudget { get; init; } = 10;
}
