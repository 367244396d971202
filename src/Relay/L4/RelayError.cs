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

    /// <summary>The client sent what the route's codec refuses (echo routes).</summary>
    ClientProtocol,

    /// <summary>The upstream sent what the route's codec refuses (echo routes).</summary>
    UpstreamProtocol,

    /// <summary>The primary failed and no shadow could take the session over.</summary>
    NoShadowReady,
}
