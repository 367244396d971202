using System.Diagnostics;

namespace Relay.Transport.Crypto;

/// <summary>
/// Anti-replay window in the style of RFC 6479: a ring of 64-bit words, advanced a word at a time,
/// so a check is one shift and one AND and an advance clears whole words. The ring holds more
/// words than the window needs (the RFC's spare block), so the bits of the whole window are always live.
/// </summary>
/// <remarks>Not thread-safe: one window per path, used by that path's receive loop.</remarks>
internal sealed class ReplayWindow
{
    public const int WindowSize = 8192;
    private const int RingWords = 256; // 16384 bits >= WindowSize + 64, a power of two for masking.
    private const int RingMask = RingWords - 1;

    private readonly ulong[] _ring = new ulong[RingWords];
    private ulong _highest;
    private bool _any;

    public ulong Highest => _highest;

    public long Accepted { get; private set; }

    /// <summary>Read-only check: would <paramref name="packetNumber"/> be fresh?</summary>
    public bool Check(ulong packetNumber, out bool tooOld)
    {
        tooOld = false;
        if (!_any || packetNumber > _highest)
        {
            return true;
        }

        if (packetNumber + WindowSize <= _highest)
        {
            tooOld = true;
            return false;
        }

        var word = (int)((packetNumber >> 6) & RingMask);
        return (_ring[word] & (1UL << (int)(packetNumber & 63))) == 0;
    }

    /// <summary>Marks an authenticated packet number as seen. Call only after <see cref="Check"/> passed.</summary>
    public void Commit(ulong packetNumber)
    {
        if (!_any || packetNumber > _highest)
        {
            var oldWord = _any ? _highest >> 6 : (packetNumber >> 6) - 1;
            var newWord = packetNumber >> 6;
            var toClear = Math.Min(newWord - oldWord, RingWords);
            for (ulong i = 1; i <= toClear; i++)
            {
                _ring[(int)((oldWord + i) & RingMask)] = 0;
            }

            _highest = packetNumber;
            _any = true;
        }

        Debug.Assert(packetNumber + WindowSize > _highest);
        _ring[(int)((packetNumber >> 6) & RingMask)] |= 1UL << (int)(packetNumber & 63);
        Accepted++;
    }
}
