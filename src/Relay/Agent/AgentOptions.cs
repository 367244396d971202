using System.Net;
using Relay.Transport.Crypto;
using Relay.Transport.Sockets;

namespace Relay.Agent;

/// <summary>Options of a <see cref="AgentHost"/> (docs/agent.md). Build them from a file or flags with <see cref="AgentCommandLine"/>.</summary>
public sealed class AgentOptions
{
    /// <remarks>The agent's name in HelloOk answers and logs. Required.</remarks>
    public string Id { get; set; } = "";

    /// <remarks>TCP address of the control listener; port 0 picks one (see <see cref="AgentHost.ControlEndPoint"/>). Required.</remarks>
    public IPEndPoint? Control { get; set; }

    /// <remarks>The local backend the shadow sessions connect to: a host name or IP and a port. Required.</remarks>
    public DnsEndPoint? Backend { get; set; }

    /// <remarks>Local IP addresses for the echo channel's UDP paths; relay path i uses <c>Paths[i % Paths.Count]</c>. At least one.</remarks>
    public IReadOnlyList<IPAddress> Paths { get; set; } = [];

    /// <summary>
    /// For embedding and tests; null (the default) binds path i on <c>Paths[i % Paths.Count]</c> port 0.
    /// When set, the agent calls it with (i, the relay's endpoint of path i) for each path the relay
    /// offers and uses the bound socket it returns, aimed at that endpoint; the agent disposes it.
    /// <see cref="Paths"/> must still be given. Tests use it to put the paths in network namespaces.
    /// </summary>
    public Func<int, IPEndPoint, UdpDatagramSocket>? PathSocketFactory { get; set; }

    /// <summary>Test hook, null in production (the agent measures the host's CPU): the CPU percent each heartbeat reports.</summary>
    internal Func<double>? CpuPercentSource { get; set; }

    /// <remarks>The pre-shared key, at least <see cref="TransportKeys.MinPskBytes"/> bytes. Security: never log it.</remarks>
    public ReadOnlyMemory<byte> Psk { get; set; }

    /// <remarks>Defaults to 500 ms.</remarks>
    public TimeSpan HeartbeatInterval { get; set; } = AgentDefaults.HeartbeatInterval;

    /// <remarks>At most one ack per session per interval. Defaults to 2 ms.</remarks>
    public TimeSpan AckInterval { get; set; } = AgentDefaults.AckInterval;

    /// <remarks>How long a takeover waits for the backend's output to reach <c>delivered</c>. Defaults to 2 s.</remarks>
    public TimeSpan TakeoverTimeout { get; set; } = AgentDefaults.TakeoverTimeout;

    /// <remarks>Timeout of a shadow's connect to the backend. Defaults to 2 s.</remarks>
    public TimeSpan BackendConnectTimeout { get; set; } = AgentDefaults.BackendConnectTimeout;

    /// <remarks>Shadow sessions held at once over all relays; an Open beyond it is answered ShadowFailed. Defaults to 10,000.</remarks>
    public int MaxShadowSessions { get; set; } = AgentDefaults.MaxShadowSessions;

    /// <remarks>
    /// Backend output kept per shadow from the relay's last reported delivered cut (and input queued
    /// for the backend); beyond it the shadow fails with a backlog reason. Defaults to 8 MiB.
    /// </remarks>
    public long MaxRetainedOutputBytes { get; set; } = AgentDefaults.MaxRetainedOutputBytes;

    /// <summary>Every problem of these options, each naming its key; empty when valid.</summary>
    public IReadOnlyList<string> Validate()
    {
        var errors = new List<string>();
        if (string.IsNullOrWhiteSpace(Id))
        {
            errors.Add("agent.id (--id): required, a name for this agent such as \"game-b\"");
        }

        if (Control is null)
        {
            errors.Add("agent.control (--control): required, the control listen address such as 127.0.0.1:7202");
        }

        if (Backend is null)
        {
            errors.Add("agent.backend (--backend): required, the local backend's address such as 127.0.0.1:7102");
        }

        if (Paths.Count is 0 or > 16)
        {
            errors.Add($"agent.paths (--path): give 1 to 16 local IP addresses for the echo channel's UDP paths (got {Paths.Count})");
        }

        if (Psk.Length < TransportKeys.MinPskBytes)
        {
            errors.Add($"agent.pskFile (--psk-file, or $RELAY_ECHO_PSK): the pre-shared key must be at least {TransportKeys.MinPskBytes} bytes (got {Psk.Length})");
        }

        CheckPositive(HeartbeatInterval, "agent.heartbeatInterval", errors);
        CheckPositive(AckInterval, "agent.ackInterval", errors);
        CheckPositive(TakeoverTimeout, "agent.takeoverTimeout", errors);
        CheckPositive(BackendConnectTimeout, "agent.backendConnectTimeout", errors);
        if (MaxShadowSessions < 1)
        {
            errors.Add($"agent.maxShadowSessions: must be at least 1 (got {MaxShadowSessions})");
        }

        if (MaxRetainedOutputBytes < 64 * 1024)
        {
            errors.Add($"agent.maxRetainedOutputBytes: must be at least 65536 (got {MaxRetainedOutputBytes})");
        }

        return errors;
    }

    private static void CheckPositive(TimeSpan value, string key, List<string> errors)
    {
        if (value <= TimeSpan.Zero)
        {
            errors.Add($"{key}: must be a positive duration such as 500ms or 2s");
        }
    }
}

/// <summary>Defaults of <see cref="AgentOptions"/>.</summary>
public static class AgentDefaults
{
    public static readonly TimeSpan HeartbeatInterval = TimeSpan.FromMilliseconds(500);
    public static readonly TimeSpan AckInterval = TimeSpan.FromMilliseconds(2);
    public static readonly TimeSpan TakeoverTimeout = TimeSpan.FromSeconds(2);
    public static readonly TimeSpan BackendConnectTimeout = TimeSpan.FromSeconds(2);
    public const int MaxShadowSessions = 10_000;
    public const long MaxRetainedOutputBytes = 8L * 1024 * 1024;

    /// <summary>Per-session digest ring: holds the cut of a takeover that comes within ~4096 messages of the last report.</summary>
    internal const int DigestCapacity = 1024;
}
