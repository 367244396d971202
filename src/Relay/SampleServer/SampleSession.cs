using System.Globalization;
using System.IO.Hashing;
using System.Text;

namespace Relay.SampleServer;

/// <summary>
/// The sample backend's per-session game state. Every answer is a function of the session's earlier
/// messages only (WHO excepted, which names the server), so two servers fed the same input give the
/// same output byte for byte: the property echo and splice rely on.
/// </summary>
public sealed class SampleSession
{
    private readonly string _serverId;
    private readonly XxHash64 _digest = new();
    private long _x;
    private long _y;
    private long _score;

    public SampleSession(string serverId) => _serverId = serverId;

    /// <summary>Messages handled so far, including this session's malformed ones.</summary>
    public long Count { get; private set; }

    public bool Closed { get; private set; }

    /// <summary>Handles one line (without its terminator); returns the reply line (without '\n').</summary>
    public string Handle(string line)
    {
        Count++;
        _digest.Append(Encoding.UTF8.GetBytes(line));
        _digest.Append("\n"u8);
        var n = Count.ToString(CultureInfo.InvariantCulture);
        var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length == 0)
        {
            return $"{n} ERR empty message";
        }

        switch (parts[0].ToUpperInvariant())
        {
            case "HELLO":
                return $"{n} WELCOME sample-protocol 1";
            case "MOVE" when parts.Length == 3 && TryInt(parts[1], out var dx) && TryInt(parts[2], out var dy):
                _x = checked(_x + dx);
                _y = checked(_y + dy);
                return $"{n} POS {_x} {_y}";
            case "MOVE":
                return $"{n} ERR usage: MOVE <dx> <dy> (whole numbers from -1000000 to 1000000)";
            case "SCORE" when parts.Length == 2 && TryInt(parts[1], out var points):
                _score = checked(_score + points);
                return $"{n} SCORE {_score}";
            case "SCORE":
                return $"{n} ERR usage: SCORE <points> (a whole number from -1000000 to 1000000)";
            case "ECHO":
                return $"{n} ECHO {(line.Length > 5 ? line[5..] : "")}";
            case "STATE":
                return $"{n} STATE {_x} {_y} {_score} {Count} {_digest.GetCurrentHashAsUInt64():x16}";
            case "WHO":
                return $"{n} WHO {_serverId}";
            case "QUIT":
                Closed = true;
                return $"{n} BYE {Count}";
            default:
                return $"{n} ERR unknown command \"{Truncate(parts[0])}\" (HELLO, MOVE, SCORE, ECHO, STATE, WHO, QUIT)";
        }
    }

    private static bool TryInt(string text, out long value) =>
        long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out value) && value is >= -1_000_000 and <= 1_000_000;

    private static string Truncate(string text) => text.Length <= 32 ? text : text[..32] + "...";
}
