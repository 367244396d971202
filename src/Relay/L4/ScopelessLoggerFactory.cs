namespace Relay.L4;

/// <summary>
/// The logger factory the L4 routes' Kestrel servers log through: every message reaches the
/// relay's loggers, but no logging scope is opened. Kestrel opens one per connection (with the
/// connection id), which costs each L4 session about 150 bytes for its whole life and an
/// execution-context change on every continuation; the relay's own log lines name the session.
/// </summary>
internal sealed class ScopelessLoggerFactory(ILoggerFactory inner) : ILoggerFactory
{
    public ILogger CreateLogger(string categoryName) => new ScopelessLogger(inner.CreateLogger(categoryName));

    public void AddProvider(ILoggerProvider provider) => inner.AddProvider(provider);

    /// <summary>The inner factory belongs to the host, which disposes it.</summary>
    public void Dispose()
    {
    }

    private sealed class ScopelessLogger(ILogger inner) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => inner.IsEnabled(logLevel);

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            inner.Log(logLevel, eventId, state, exception, formatter);
    }
}
