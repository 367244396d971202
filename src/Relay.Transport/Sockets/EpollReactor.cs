using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Threading.Tasks.Sources;

namespace Relay.Transport.Sockets;

/// <summary>
/// An epoll instance of the relay's own, with one thread that waits on it, for TCP sockets whose
/// owner reads and writes them with non-blocking calls and only needs to be told when to try again.
/// </summary>
/// <remarks>
/// <para>
/// Why not the runtime's socket engine: a <see cref="Socket"/> awaiting data first tries the call
/// (a zero-byte receive is a one-byte <c>MSG_PEEK</c>) and waits only after it failed with EAGAIN,
/// so every wait costs one system call that finds nothing; on this project's VM a system call costs
/// about a microsecond, and a relayed request waits twice. A socket registered here is edge-triggered
/// for reading and writing once, for its life; its owner reads until a read comes back short (the
/// kernel had no more) and then waits, with no call in between, because any later data raises a new
/// edge. A wait that an edge already satisfied completes at once.
/// </para>
/// <para>
/// Continuations of a wait run inline on the reactor's thread, as the runtime's do with
/// <c>DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS=1</c>: they must not block.
/// </para>
/// <para>Linux on x86-64 only (the packed <c>epoll_event</c>); <see cref="IsSupported"/> says so.</para>
/// </remarks>
public sealed partial class EpollReactor : IDisposable
{
    private const int EpollCtlAdd = 1;
    private const int EpollCtlDel = 2;
    private const uint EpollIn = 0x001;
    private const uint EpollOut = 0x004;
    private const uint EpollErr = 0x008;
    private const uint EpollHup = 0x010;
    private const uint EpollRdHup = 0x2000;
    private const uint EpollEt = 1u << 31;
    private const int EpollCloexec = 0x80000;
    private const int EfdNonblock = 0x800;
    private const int EfdCloexec = 0x80000;
    private const int EIntr = 4;
    private const int MaxEvents = 256;
    private const ulong WakeupData = ulong.MaxValue;

    private readonly int _epoll;
    private readonly int _wakeup;
    private readonly Thread _thread;
    private readonly Lock _gate = new();
    private readonly Stack<int> _freeSlots = new();
    private SocketReadiness?[] _slots = new SocketReadiness?[64];
    private int _usedSlots;
    private volatile bool _disposed;

    private EpollReactor(string name)
    {
        _epoll = epoll_create1(EpollCloexec);
        if (_epoll < 0)
        {
            throw new SocketException(Marshal.GetLastPInvokeError());
        }

        _wakeup = eventfd(0, EfdNonblock | EfdCloexec);
        if (_wakeup < 0)
        {
            var error = Marshal.GetLastPInvokeError();
            _ = close(_epoll);
            throw new SocketException(error);
        }

        var wake = new EpollEvent { Events = EpollIn, Data = WakeupData };
        if (epoll_ctl(_epoll, EpollCtlAdd, _wakeup, ref wake) != 0)
        {
            var error = Marshal.GetLastPInvokeError();
            _ = close(_wakeup);
            _ = close(_epoll);
            throw new SocketException(error);
        }

        _thread = new Thread(Run) { IsBackground = true, Name = name };
        _thread.UnsafeStart();
    }

    /// <summary>True where the reactor can run: Linux on x86-64.</summary>
    public static bool IsSupported => OperatingSystem.IsLinux() && RuntimeInformation.ProcessArchitecture == Architecture.X64;

    /// <summary>Sockets registered now (for tests and metrics).</summary>
    public int Registered
    {
        get
        {
            lock (_gate)
            {
                return _usedSlots;
            }
        }
    }

    /// <summary>Creates a reactor and starts its thread.</summary>
    public static EpollReactor Create(string name = "Relay epoll")
    {
        if (!IsSupported)
        {
            throw new PlatformNotSupportedException("the epoll reactor needs Linux on x86-64");
        }

        return new EpollReactor(name);
    }

    /// <summary>
    /// Registers <paramref name="socket"/> (it is made non-blocking) for the rest of its life. The
    /// returned readiness must be disposed before the socket is.
    /// </summary>
    public SocketReadiness Register(Socket socket)
    {
        ArgumentNullException.ThrowIfNull(socket);
        ObjectDisposedException.ThrowIf(_disposed, this);
        socket.Blocking = false;
        var fd = (int)socket.SafeHandle.DangerousGetHandle();
        int slot;
        SocketReadiness readiness;
        lock (_gate)
        {
            if (!_freeSlots.TryPop(out slot))
            {
                slot = _usedSlots;
                if (slot == _slots.Length)
                {
                    var grown = new SocketReadiness?[_slots.Length * 2];
                    _slots.CopyTo(grown, 0);
                    Volatile.Write(ref _slots, grown);
                }
            }

            readiness = new SocketReadiness(this, fd, slot);
            _slots[slot] = readiness;
            _usedSlots++;
        }

        var ev = new EpollEvent { Events = EpollIn | EpollOut | EpollRdHup | EpollEt, Data = (ulong)slot };
        if (epoll_ctl(_epoll, EpollCtlAdd, fd, ref ev) != 0)
        {
            var error = Marshal.GetLastPInvokeError();
            Release(slot, fd, registered: false);
            throw new SocketException(error);
        }

        return readiness;
    }

    internal void Release(int slot, int fd, bool registered)
    {
        if (registered)
        {
            // The socket is still open here (its owner disposes it after us); a failure only means
            // the kernel dropped it already.
            var ignored = default(EpollEvent);
            _ = epoll_ctl(_epoll, EpollCtlDel, fd, ref ignored);
        }

        lock (_gate)
        {
            _slots[slot] = null;
            _freeSlots.Push(slot);
            _usedSlots--;
        }
    }

    private unsafe void Run()
    {
        var events = stackalloc EpollEvent[MaxEvents];
        while (!_disposed)
        {
            var n = epoll_wait(_epoll, events, MaxEvents, -1);
            if (n < 0)
            {
                if (Marshal.GetLastPInvokeError() == EIntr)
                {
                    continue;
                }

                return;
            }

            // A slot freed and reused while its event waited here is woken spuriously: its owner's
            // next call finds EAGAIN and waits again, so that is harmless.
            var slots = Volatile.Read(ref _slots);
            for (var i = 0; i < n; i++)
            {
                var data = events[i].Data;
                if (data == WakeupData)
                {
                    continue;
                }

                if (data >= (ulong)slots.Length || Volatile.Read(ref slots[(int)data]) is not { } readiness)
                {
                    continue;
                }

                var flags = events[i].Events;
                if ((flags & (EpollRdHup | EpollHup | EpollErr)) != 0)
                {
                    readiness.Readable.MarkHangUp();
                }

                if ((flags & (EpollIn | EpollRdHup | EpollHup | EpollErr)) != 0)
                {
                    readiness.Readable.Signal();
                }

                if ((flags & (EpollOut | EpollHup | EpollErr)) != 0)
                {
                    readiness.Writable.Signal();
                }
            }
        }
    }

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        ulong one = 1;
        unsafe
        {
            _ = write(_wakeup, &one, sizeof(ulong));
        }

        if (Thread.CurrentThread != _thread)
        {
            _thread.Join();
        }

        _ = close(_wakeup);
        _ = close(_epoll);
    }

    // struct epoll_event is packed on x86-64: 4 bytes of events, then 8 of data.
    [StructLayout(LayoutKind.Sequential, Pack = 1)]
    private struct EpollEvent
    {
        public uint Events;
        public ulong Data;
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int epoll_create1(int flags);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int epoll_ctl(int epfd, int op, int fd, ref EpollEvent ev);

    [LibraryImport("libc", SetLastError = true)]
    private static unsafe partial int epoll_wait(int epfd, EpollEvent* events, int maxEvents, int timeout);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int eventfd(uint initial, int flags);

    [LibraryImport("libc", SetLastError = true)]
    private static unsafe partial nint write(int fd, void* buffer, nuint count);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int close(int fd);
}

/// <summary>One socket's registration with an <see cref="EpollReactor"/>: a signal per direction.</summary>
public sealed class SocketReadiness : IDisposable
{
    private readonly EpollReactor _reactor;
    private readonly int _fd;
    private readonly int _slot;
    private int _disposed;

    internal SocketReadiness(EpollReactor reactor, int fd, int slot)
    {
        _reactor = reactor;
        _fd = fd;
        _slot = slot;
    }

    /// <summary>Raised when the socket may have data, an end or an error to read.</summary>
    public ReadinessSignal Readable { get; } = new();

    /// <summary>Raised when the socket may have room to write (or an error).</summary>
    public ReadinessSignal Writable { get; } = new();

    /// <summary>
    /// Sends all of <paramref name="data"/> on the registered (non-blocking) socket: straight into its
    /// buffer while that has room, and only after a send found it full, waiting for the edge that says
    /// it drained. Completes synchronously in the usual case. Throws <see cref="SocketException"/> on a
    /// socket error and <see cref="ObjectDisposedException"/> once the registration is disposed.
    /// </summary>
    public ValueTask SendAllAsync(Socket socket, ReadOnlyMemory<byte> data)
    {
        ArgumentNullException.ThrowIfNull(socket);
        return TrySend(socket, ref data) ? ValueTask.CompletedTask : SendWhenWritableAsync(socket, data);
    }

    private async ValueTask SendWhenWritableAsync(Socket socket, ReadOnlyMemory<byte> data)
    {
        do
        {
            await Writable.WaitAsync().ConfigureAwait(false);
            ObjectDisposedException.ThrowIf(Writable.IsClosed, socket);
        }
        while (!TrySend(socket, ref data));
    }

    /// <summary>Sends what the buffer takes; true when all of it went, false when the buffer is full.</summary>
    private static bool TrySend(Socket socket, ref ReadOnlyMemory<byte> data)
    {
        while (!data.IsEmpty)
        {
            var sent = socket.Send(data.Span, SocketFlags.None, out var error);
            if (error == SocketError.WouldBlock)
            {
                return false;
            }

            if (error != SocketError.Success)
            {
                throw new SocketException((int)error);
            }

            data = data[sent..];
        }

        return true;
    }

    /// <summary>Unregisters the socket and ends any wait (it completes as if signalled).</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _reactor.Release(_slot, _fd, registered: true);
        Readable.Close();
        Writable.Close();
    }
}

/// <summary>
/// An edge-triggered readiness flag with one waiter at a time: <see cref="WaitAsync"/> completes at
/// once when an edge came since the last wait, otherwise at the next edge (inline, on the reactor's
/// thread). Reusable and allocation-free.
/// </summary>
public sealed class ReadinessSignal : IValueTaskSource
{
    private const int Idle = 0;
    private const int Ready = 1;
    private const int Waiting = 2;
    private const int Closed = 3;

    private ManualResetValueTaskSourceCore<bool> _core;
    private int _state;
    private volatile bool _hangUp;

    internal ReadinessSignal()
    {
        _core.RunContinuationsAsynchronously = false;
    }

    /// <summary>
    /// True once an edge reported the peer's FIN, a hang-up or an error. A short read then no longer
    /// means the socket is drained: the end (a read of 0, or the error) is still to be read, and no
    /// further edge will announce it, so the reader must read on until it gets it.
    /// </summary>
    public bool HangUp => _hangUp;

    /// <summary>True once the registration was disposed: waits complete at once.</summary>
    public bool IsClosed => Volatile.Read(ref _state) == Closed;

    /// <summary>Completes at the next edge, or now if one came since the last wait. One waiter at a time.</summary>
    public ValueTask WaitAsync()
    {
        var state = Volatile.Read(ref _state);
        if (state == Closed || (state == Ready && Interlocked.CompareExchange(ref _state, Idle, Ready) == Ready))
        {
            return ValueTask.CompletedTask;
        }

        _core.Reset();
        state = Interlocked.CompareExchange(ref _state, Waiting, Idle);
        if (state == Idle)
        {
            return new ValueTask(this, _core.Version);
        }

        // An edge (or the close) came between the check and the wait.
        if (state == Ready)
        {
            Interlocked.CompareExchange(ref _state, Idle, Ready);
        }

        return ValueTask.CompletedTask;
    }

    /// <summary>Forgets an edge that came before a call about to be made anyway (saves a spurious wake-up).</summary>
    internal void Consume() => Interlocked.CompareExchange(ref _state, Idle, Ready);

    internal void MarkHangUp() => _hangUp = true;

    internal void Signal()
    {
        while (true)
        {
            var state = Volatile.Read(ref _state);
            switch (state)
            {
                case Idle:
                    if (Interlocked.CompareExchange(ref _state, Ready, Idle) == Idle)
                    {
                        return;
                    }

                    break;
                case Waiting:
                    if (Interlocked.CompareExchange(ref _state, Idle, Waiting) == Waiting)
                    {
                        _core.SetResult(true);
                        return;
                    }

                    break;
                default:
                    return;
            }
        }
    }

    internal void Close()
    {
        if (Interlocked.Exchange(ref _state, Closed) == Waiting)
        {
            _core.SetResult(false);
        }
    }

    void IValueTaskSource.GetResult(short token) => _core.GetResult(token);

    ValueTaskSourceStatus IValueTaskSource.GetStatus(short token) => _core.GetStatus(token);

    void IValueTaskSource.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);
}
