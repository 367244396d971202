using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Security.Authentication;
using Relay.Echo;
using Relay.Transport.Control;

namespace Relay.Agent;

public sealed partial class AgentHost
{
    /// <summary>How long a prepared takeover connection spins for the relay's TAKEOVER before it waits.</summary>
    private static readonly TimeSpan PreparedSpin = TimeSpan.FromMilliseconds(2);

    /// <summary>
    /// Spins, for at most <paramref name="limit"/>, until <paramref name="socket"/> has bytes to read.
    /// The relay sends TAKEOVER as soon as it has paused the session, 0.1-0.2 ms after our
    /// TakeoverPrepared. This thread, which sent that answer, is awake; waiting instead would leave the
    /// read to the socket engine, which wakes a sleeping pool worker for it (idle workers do not spin
    /// here, docs/agent.md), and that second wake-up was about a third of a planned splice's blackout
    /// (docs/benchmarks.md, session 16). A relay that never follows up costs one bounded spin.
    /// </summary>
    private static void SpinUntilReadable(Socket socket, TimeSpan limit)
    {
        var deadline = Stopwatch.GetTimestamp() + (long)(limit.TotalSeconds * Stopwatch.Frequency);
        try
        {
            while (socket.Available == 0 && Stopwatch.GetTimestamp() < deadline)
            {
                Thread.SpinWait(32);
            }
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            // Closed meanwhile: the receive that follows reports it.
        }
    }

    /// <summary>
    /// A pre-opened takeover connection: waits (possibly minutes) for one TAKEOVER, applies its tail,
    /// waits for the backend's output to reach <c>delivered</c>, answers OK with the cut, and from then on
    /// carries the session's bytes raw on this socket (DESIGN.md "Splice", steps 2-3).
    /// </summary>
    private async Task RunTakeoverAsync(ControlChannel control, Socket socket, EndPoint? remote)
    {
        // After TakeoverOk the control channel is no longer used, but it stays undisposed until the
        // splice ends: disposing it would close the socket the session now runs on.
        try
        {
            var message = await control.ReceiveAsync(_stop.Token).ConfigureAwait(false);
            if (message is not null && EchoWire.TryReadTakeoverPrepare(message, out var preparedRelay, out var preparedSession))
            {
                // A planned takeover is coming: check it can run and say so. The relay pauses the session
                // only after this answer, so this round trip is not in the blackout; it wakes this agent
                // for the TAKEOVER that follows (EchoManager.PrepareTakeoverAsync).
                if (FindTakeoverSession(preparedRelay, preparedSession, out _) is { } problem)
                {
                    await RefuseAsync(control, preparedRelay, preparedSession, problem).ConfigureAwait(false);
                    return;
                }

                await control.SendAsync(EchoWire.TakeoverPrepared(), _stop.Token).ConfigureAwait(false);
                SpinUntilReadable(socket, PreparedSpin);
                message = await control.ReceiveAsync(_stop.Token).ConfigureAwait(false);
            }

            if (message is null)
            {
                return;
            }

            if (!EchoWire.TryReadTakeover(message, out var request))
            {
                CountDropped();
                await RefuseAsync(control, 0, 0, "the message is not a well-formed Takeover").ConfigureAwait(false);
                return;
            }

            var started = Stopwatch.GetTimestamp();
            if (FindTakeoverSession(request.RelayId, request.SessionId, out var session) is { } obstacle)
            {
                await RefuseAsync(control, request.RelayId, request.SessionId, obstacle).ConfigureAwait(false);
                return;
            }

            if (request.DeliveredIsMessages != (session.Codec != MessageCodec.Raw))
            {
                await RefuseAsync(control, request.RelayId, request.SessionId, $"delivered is given in {(request.DeliveredIsMessages ? "messages" : "bytes")}, but the session's codec {session.Codec} counts {(session.Codec == MessageCodec.Raw ? "bytes" : "messages")}").ConfigureAwait(false);
                return;
            }

            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
            deadline.CancelAfter(Options.TakeoverTimeout);
            if (await ApplyTailAsync(control, session, request, deadline.Token).ConfigureAwait(false) is { } tailProblem)
            {
                await RefuseAsync(control, request.RelayId, request.SessionId, tailProblem).ConfigureAwait(false);
                return;
            }

            // Wait for the backend to answer up to 'delivered', woken by each output (no polling:
            // this wait is part of the session's blackout).
            while (!deadline.IsCancellationRequested && session.WaitForOutput(request.Delivered) is { } more)
            {
                try
                {
                    await more.WaitAsync(deadline.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    break;
                }
            }

            _stop.Token.ThrowIfCancellationRequested();
            var progress = session.OutputProgress();
            if (progress < request.Delivered)
            {
                var unit = session.Codec == MessageCodec.Raw ? "byte(s)" : "message(s)";
                var why = session.TakeoverObstacle() ?? $"within {Options.TakeoverTimeout.TotalMilliseconds:F0} ms";
                await RefuseAsync(control, request.RelayId, request.SessionId, $"the backend's output reached {progress} of the {request.Delivered} delivered {unit} ({why})").ConfigureAwait(false);
                return;
            }

            if (!session.TryDetach(request.Delivered, socket, out var cut, out var pending, out var detachProblem))
            {
                await RefuseAsync(control, request.RelayId, request.SessionId, detachProblem).ConfigureAwait(false);
                return;
            }

            Interlocked.Increment(ref _spliced);
            try
            {
                await control.SendAsync(EchoWire.TakeoverOk(cut), _stop.Token).ConfigureAwait(false);

                // ControlChannel reads exactly one frame at a time, so the raw bytes start right here.
                if (!pending.IsEmpty)
                {
                    await socket.SendAsync(pending, SocketFlags.None, _stop.Token).ConfigureAwait(false);
                }

                // The relay's session is paused until it has read OK. Where the relay shares this host's
                // CPUs, its reader's wake-up can wait behind the bookkeeping below and the forwarding it
                // starts; yield once first. perf/splice-blackout.sh on a loaded 2-core VM, back to back:
                // blackout p50 0.62-0.71 ms with the yield, 0.73-0.76 ms without (docs/benchmarks.md).
                // On a host of its own it costs a syscall.
                Thread.Yield();

                session.ReleaseForwarding();
                Interlocked.Increment(ref _takeovers);
                AgentLog.TakeoverDone(_logger, request.SessionId, request.RelayId, request.Delivered, cut, request.TailLength, Stopwatch.GetElapsedTime(started).TotalMilliseconds);
                var (toBackend, fromBackend) = await session.SpliceAsync(socket, _stop.Token).ConfigureAwait(false);
                AgentLog.SplicedEnded(_logger, request.SessionId, request.RelayId, toBackend, fromBackend + pending.Length);
            }
            finally
            {
                session.Close();
                Unregister(session);
                Interlocked.Decrement(ref _spliced);
            }
        }
        catch (Exception ex) when (ex is AuthenticationException or IOException or SocketException or InvalidDataException or OperationCanceledException or ObjectDisposedException)
        {
            if (!_stop.IsCancellationRequested)
            {
                AgentLog.TakeoverConnectionFailed(_logger, remote, ex);
            }
        }
        finally
        {
            await control.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <summary>The shadow a takeover names, or why it cannot be taken over.</summary>
    private string? FindTakeoverSession(long relayId, long sessionId, out ShadowSession session)
    {
        if (!_registry.TryGetValue((relayId, sessionId), out session!))
        {
            return $"agent {Options.Id} holds no shadow of session {sessionId} of relay {relayId}";
        }

        return session.TakeoverObstacle();
    }

    /// <summary>Reads the TakeoverTail messages and applies the bytes beyond the shadow's applied offset; returns a problem or null.</summary>
    private static async Task<string?> ApplyTailAsync(ControlChannel control, ShadowSession session, TakeoverRequest request, CancellationToken cancellationToken)
    {
        var offset = request.TailStart;
        var remaining = request.TailLength;
        var applied = session.Applied;
        if (request.TailStart > applied)
        {
            return $"the tail starts at input offset {request.TailStart}, but the shadow applied only {applied} byte(s)";
        }

        try
        {
            while (remaining > 0)
            {
                var chunk = await control.ReceiveAsync(cancellationToken).ConfigureAwait(false);
                if (chunk is null)
                {
                    return "the relay closed the connection inside the tail";
                }

                if (EchoWire.TypeOf(chunk) != EchoMessageType.TakeoverTail || chunk.Length - 1 > remaining)
                {
                    return $"expected a TakeoverTail chunk of at most {remaining} byte(s), got a message of type {chunk[0]} and {chunk.Length} byte(s)";
                }

                if (!session.TryApply(offset, chunk.AsSpan(1), out var problem))
                {
                    return problem;
                }

                offset += chunk.Length - 1;
                remaining -= chunk.Length - 1;
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            return $"the tail did not arrive within the takeover timeout ({remaining} of {request.TailLength} byte(s) missing)";
        }

        applied = session.Applied;
        return applied == request.InOffset ? null : $"after the tail the shadow applied {applied} byte(s), not the relay's {request.InOffset}";
    }

    private async Task RefuseAsync(ControlChannel control, long relayId, long sessionId, string reason)
    {
        Interlocked.Increment(ref _takeoversRefused);
        AgentLog.TakeoverRefused(_logger, sessionId, relayId, reason);
        await control.SendAsync(EchoWire.Refused(reason), _stop.Token).ConfigureAwait(false);
    }
}
