using System.Net;
using System.Net.Sockets;
using System.Threading.Tasks.Sources;

using Relay.L4;

namespace Relay.Health;

/// <summary>
/// Opens the health probes' TCP connections and reports a refused, unreachable or timed-out connect
/// as a value, not an exception.
/// </summary>
/// <remarks>
/// <see cref="Socket.ConnectAsync(EndPoint, CancellationToken)"/> throws for every failed connect,
/// and the runtime captures each exception's stack trace with file and line, which loads the PDB
/// readers (about 2 MiB of the process) at the first one: a backend that is down is probed every
/// interval. The sessions' own connects (<see cref="UpstreamConnector"/>) keep the runtime's call:
/// through this one, 5,000 idle sessions left the relay 4-6 MiB larger (docs/benchmarks.md,
/// session 14).
/// </remarks>
internal static class TcpConnect
{
    /// <summary>The connected socket, or why there is none.</summary>
    internal readonly record struct Outcome(Socket? Socket, SocketError Error, bool TimedOut);

    /// <summary>
    /// Connects to <paramref name="address"/> (an IP address, or a host name tried address by
    /// address) within <paramref name="timeout"/>. Throws <see cref="OperationCanceledException"/>
    /// only when <paramref name="cancellationToken"/> is cancelled.
    /// </summary>
    public static async ValueTask<Outcome> ConnectAsync(DnsEndPoint address, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var target = UpstreamConnector.TargetOf(address);
        var socket = UpstreamConnector.NewSocket(target);
        var error = SocketError.Success;
        var timedOut = false;
        using (var operation = new ConnectOperation(target))
        {
            if (socket.ConnectAsync(operation))
            {
                // A connect cannot be cancelled, only its socket closed: that ends it with OperationAborted.
                using var timer = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                timer.CancelAfter(timeout);
                using (timer.Token.UnsafeRegister(static state => ((Socket)state!).Dispose(), socket))
                {
                    error = await operation.Completion.ConfigureAwait(false);
                }

                timedOut = error == SocketError.OperationAborted && timer.IsCancellationRequested;
            }
            else
            {
                error = operation.SocketError;
            }
        }

        if (error == SocketError.Success)
        {
            return new Outcome(socket, error, TimedOut: false);
        }

        socket.Dispose();
        cancellationToken.ThrowIfCancellationRequested();
        return new Outcome(null, error, timedOut);
    }

    /// <summary>One connect's completion as a <see cref="ValueTask{SocketError}"/>.</summary>
    private sealed class ConnectOperation : SocketAsyncEventArgs, IValueTaskSource<SocketError>
    {
        private ManualResetValueTaskSourceCore<SocketError> _source;

        public ConnectOperation(EndPoint target)
            : base(unsafeSuppressExecutionContextFlow: true)
        {
            RemoteEndPoint = target;
        }

        public ValueTask<SocketError> Completion => new(this, _source.Version);

        protected override void OnCompleted(SocketAsyncEventArgs e) => _source.SetResult(e.SocketError);

        public SocketError GetResult(short token) => _source.GetResult(token);

        public ValueTaskSourceStatus GetStatus(short token) => _source.GetStatus(token);

        public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
            _source.OnCompleted(continuation, state, token, flags);
    }
}
