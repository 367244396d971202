namespace Relay.Configuration;

/// <summary>Every default in one place, as runtime's QuicDefaults keeps them.</summary>
public static class RelayDefaults
{
    public const int AdminPort = 9901;

    public const string AdminTokenEnvironmentVariable = "RELAY_ADMIN_TOKEN";

    public static readonly TimeSpan DrainTimeout = TimeSpan.FromSeconds(30);

    // 64 KiB blocks: with Kestrel's 4 KiB blocks one receive reads at most 4 KiB, and the
    // brief's measurement here put a naive 4 KiB-segment relay at 19% of direct on iperf3 against
    // 55% with 64 KiB buffers. Idle sessions hold no block (WaitForDataBeforeAllocatingBuffer).
    public const int BlockBytes = 64 * 1024;

    public const int MaxBufferedBytes = 256 * 1024;

    // Returned I/O blocks the pool keeps for reuse (1024 x 64 KiB = 64 MiB of address space at most;
    // only pages written are resident). Dropping a returned block frees nothing while a socket's
    // SocketAsyncEventArgs still points at it as its last receive buffer (Kestrel's receiver keeps
    // that reference), so keeping blocks for reuse is cheaper than allocating new ones: measured
    // with 5,000 sessions opened at once, a 256-block cap left ~1,150 blocks alive after a full GC
    // and allocated 1,300, where an unbounded cache allocated 780.
    public const int MaxCachedBlocks = 1024;

    public const int MaxSessionsPerRoute = 10_000;

    public static readonly TimeSpan IdleTimeout = TimeSpan.FromMinutes(5);

    public static readonly TimeSpan ConnectTimeout = TimeSpan.FromSeconds(3);

    public const int ConnectAttempts = 3;

    public static readonly TimeSpan ProbeInterval = TimeSpan.FromSeconds(2);

    public static readonly TimeSpan ProbeTimeout = TimeSpan.FromSeconds(1);

    public static readonly TimeSpan EjectionTime = TimeSpan.FromSeconds(10);

    public static readonly TimeSpan ReloadDebounce = TimeSpan.FromMilliseconds(250);

    // L7 (issue 6).
    public static readonly TimeSpan HttpRequestTimeout = TimeSpan.FromSeconds(100);

    public const int HttpMaxBufferedBodyBytes = 64 * 1024;

    public static readonly TimeSpan AffinityIdleTimeout = TimeSpan.FromMinutes(30);

    public const int AffinityMaxSessions = 100_000;

    public const string AffinityCookieName = "relay-session";

    public const string AffinityHeaderName = "X-Relay-Session";

    public const string MirrorHeader = "X-Relay-Shadow";

    public const int MirrorQueueLength = 1024;

    public const int MirrorConcurrency = 4;

    public static readonly System.Collections.Immutable.ImmutableArray<string> CompareIgnoredHeaders =
        ["Date", "Server", "Connection", "Keep-Alive", "Transfer-Encoding", "Content-Length", "Set-Cookie"];

    public static readonly TimeSpan RetryBackoff = TimeSpan.FromMilliseconds(5);

    public static readonly TimeSpan RetryMaxBackoff = TimeSpan.FromMilliseconds(250);

    public const string EchoPskEnvironmentVariable = "RELAY_ECHO_PSK";

    public static readonly TimeSpan TakeoverTimeout = TimeSpan.FromSeconds(2);

    public static readonly TimeSpan EchoInterval = TimeSpan.FromMilliseconds(5);

    public const long EchoRetentionBytes = 4 * 1024 * 1024;

    public const long EchoMaxLagBytes = 64 * 1024;

    /// <summary>With a message codec: a shadow whose output trails the primary's by more messages is not Ready.</summary>
    public const long EchoMaxOutputLagMessages = 1024;

    public static readonly TimeSpan EchoAckTimeout = TimeSpan.FromSeconds(3);
}
