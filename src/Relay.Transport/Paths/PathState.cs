using Relay.Transport.Crypto;
using Relay.Transport.Sockets;

namespace Relay.Transport.Paths;

/// <summary>
/// Everything the channel knows about one path. Send-side fields are guarded by the channel's send
/// lock; <see cref="Replay"/> and the receive counters by <see cref="ReceiveLock"/>.
/// </summary>
internal sealed class PathState
{
    public PathState(int index, IDatagramSocket socket)
    {
        Index = index;
        Socket = socket;
    }

    public int Index { get; }

    public IDatagramSocket Socket { get; }

    // Send side (channel send lock).
    public ulong NextPacketNumber;
    public long PacketsSent;
    public long BytesSent;
    public long SendFailures;
    public double Tokens;
    public long LastRefillTicks;

    // Probing and quality (channel send lock).
    public uint NextProbeId;
    public long LastProbeSentTicks;
    public long LastProbeAckTicks;
    public int ProbesSinceAck;
    public int ConsecutiveAcks;
    public bool Alive = true;
    public long DeadSinceTicks;
    public bool DeathCounted;
    public bool HasRtt;
    public double SrttMs;
    public double RttVarMs;
    public double JitterMs;
    public double LastRttMs;
    public double LastLoss;
    public Holt LossForecast;
    public Holt RttForecast;
    public ulong LastPeerReceived;
    public ulong LastPeerHighest;
    public bool HasPeerCounts;
    public double Share = 1;
    public double WrrCurrent;

    // Receive side.
    public readonly object ReceiveLock = new();
    public readonly ReplayWindow Replay = new();
    public long PacketsReceived;
    public long BytesReceived;

    public double ForecastLoss => Math.Clamp(LossForecast.Forecast(), 0, 1);

    public double ForecastRttMs => HasRtt ? Math.Max(RttForecast.Forecast(), 0.01) : 1;

    public void OnRttSample(double rttMs)
    {
        // RFC 6298 smoothing for the RTO; RFC 3550-style mean deviation for jitter.
        if (!HasRtt)
        {
            SrttMs = rttMs;
            RttVarMs = rttMs / 2;
            HasRtt = true;
        }
        else
        {
            RttVarMs = (0.75 * RttVarMs) + (0.25 * Math.Abs(SrttMs - rttMs));
            SrttMs = (0.875 * SrttMs) + (0.125 * rttMs);
            JitterMs += (Math.Abs(rttMs - LastRttMs) - JitterMs) / 16;
        }

        LastRttMs = rttMs;
        RttForecast.Add(rttMs);
    }
}
