using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace Relay.FunctionalTests.Infrastructure;

/// <summary>Captures what the relay logs, so tests assert on event names (STYLE.md 6).</summary>
public sealed class TestLog : ILoggerProvider
{
    public ConcurrentQueue<LogEntry> Entries { get; } = new();

    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

    public void Dispose()
    {
    }

    public bool Has(string eventName) => Entries.Any(e => e.EventName == eventName);

    public IEnumerable<LogEntry> Named(string eventName) => Entries.Where(e => e.EventName == eventName);

    /// <summary>The last <paramref name="count"/> entries at Information or above, for a failure message.</summary>
    public string Tail(int count) => string.Join("\n", Entries.Where(e => e.Level >= LogLevel.Information).TakeLast(count).Select(e => $"{e.Level} {e.EventName}: {e.Message}"));

    public async Task<LogEntry> WaitForAsync(string eventName, TimeSpan timeout, Func<LogEntry, bool>? predicate = null)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            var found = Entries.FirstOrDefault(e => e.EventName == eventName && (predicate is null || predicate(e)));
            if (found is not null)
            {
                return found;
            }

            await Task.Delay(20);
        }

        throw new TimeoutException($"no log event {eventName} within {timeout}; saw: {string.Join(", ", Entries.Select(e => e.EventName).Distinct())}");
    }

    private sealed class Logger(TestLog owner, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            owner.Entries.Enqueue(new LogEntry(category, logLevel, eventId.Id, eventId.Name, formatter(state, exception) + (exception is null ? "" : " " + exception)));
    }
}

public sealed record LogEntry(string Category, LogLevel Level, int EventId, string? EventName, string Message);
