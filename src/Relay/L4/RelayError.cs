namespace Relay;

/// <summary>Why a session ended or was refused (YARP ForwarderError: failures are values).</summary>
public enum RelayError
{
    None,
    ClientClosed,
    ClientReset,
    UpstreamClosed,
    UpstreamReset,
    UpstreamConnectRefused,
    UpstreamConnectTimeout,
    UpstreamConnectFailed,
    NoHealthyEndpoint,
    RouteSessionLimit,
    ClientSessionLimit,
    IdleTimeout,
    Shutdown,
    RouteRemoved,
    Aborted,
}
