using Relay.Transport.Crypto;

namespace Relay.Transport.Tests.Crypto;

public class ReplayWindowTests
{
    [Fact]
    public void Duplicates_AreRejected_InAnyOrder()
    {
        var window = new ReplayWindow();
        var random = new Random(8);
        var order = Enumerable.Range(0, 20_000).OrderBy(i => i + random.Next(0, 4000)).Select(i => (ulong)i).ToArray();
        foreach (var pn in order)
        {
            Assert.True(window.Check(pn, out _));
            window.Commit(pn);
            Assert.False(window.Check(pn, out _));
        }
    }

    [Fact]
    public void WindowCovers8192_OlderIsTooOld()
    {
        var window = new ReplayWindow();
        window.Commit(100_000);
        Assert.True(window.Check(100_000 - 8191, out var tooOld));
        Assert.False(tooOld);
        Assert.False(window.Check(100_000 - 8192, out tooOld));
        Assert.True(tooOld);

        // Every number in the window is still accepted once, out of order.
        var random = new Random(3);
        foreach (var pn in Enumerable.Range(1, 8191).OrderBy(_ => random.Next()))
        {
            var candidate = 100_000UL - (ulong)pn;
            Assert.True(window.Check(candidate, out _));
            window.Commit(candidate);
        }

        Assert.False(window.Check(99_999, out _));
    }

    [Fact]
    public void LargeJump_ClearsStaleBits()
    {
        var window = new ReplayWindow();
        for (ulong pn = 0; pn < 1000; pn++)
        {
            window.Commit(pn);
        }

        // Jump exactly one ring (16384 bits) ahead: stale bits at the same ring positions must not count.
        window.Commit(16_384 + 999);
        for (ulong pn = 16_384 + 100; pn < 16_384 + 999; pn++)
        {
            Assert.True(window.Check(pn, out _), $"{pn} looked replayed");
        }
    }
}
