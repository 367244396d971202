namespace Relay.Transport.Multipath;

/// <summary>
/// A wake-up for waiters on a condition guarded elsewhere: take <see cref="WaitAsync"/> under the
/// condition's lock, re-check, then await. Allocates a task only when somebody actually waits.
/// </summary>
internal sealed class AsyncSignal
{
    private readonly object _gate = new();
    private TaskCompletionSource? _waiters;

    public Task WaitAsync()
    {
        lock (_gate)
        {
            _waiters ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            return _waiters.Task;
        }
    }

    public void Set()
    {
        TaskCompletionSource? waiters;
        lock (_gate)
        {
            waiters = _waiters;
            _waiters = null;
        }

        waiters?.TrySetResult();
    }
}
