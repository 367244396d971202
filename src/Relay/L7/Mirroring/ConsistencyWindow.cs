using Relay.Configuration;

namespace Relay.L7.Mirroring;

public enum ShadowConsistency
{
    /// <summary>Fewer comparisons than <see cref="CompareConfig.MinSamples"/> so far.</summary>
    Unknown,

    /// <summary>The window's mismatches are within <see cref="CompareConfig.MaxMismatchPercent"/>.</summary>
    Consistent,

    Inconsistent,
}

/// <summary>The last <see cref="CompareConfig.Window"/> comparison results of one shadow.</summary>
internal sealed class ConsistencyWindow
{
    private readonly CompareConfig _config;
    private readonly bool[] _mismatch;
    private int _next;
    private int _count;
    private int _mismatches;

    public ConsistencyWindow(CompareConfig config)
    {
        _config = config;
        _mismatch = new bool[config.Window];
    }

    public ShadowConsistency State { get; private set; }

    public int Samples => _count;

    public int Mismatches => _mismatches;

    /// <summary>Adds one result; returns true when the state changed. Not thread-safe: callers lock.</summary>
    public bool Add(bool matched)
    {
        if (_count == _mismatch.Length)
        {
            if (_mismatch[_next])
            {
                _mismatches--;
            }
        }
        else
        {
            _count++;
        }

        _mismatch[_next] = !matched;
        if (!matched)
        {
            _mismatches++;
        }

        _next = (_next + 1) % _mismatch.Length;
        var state = _count < _config.MinSamples
            ? ShadowConsistency.Unknown
            : _mismatches * 100.0 / _count <= _config.MaxMismatchPercent ? ShadowConsistency.Consistent : ShadowConsistency.Inconsistent;
        var changed = state != State;
        State = state;
        return changed;
    }
}
