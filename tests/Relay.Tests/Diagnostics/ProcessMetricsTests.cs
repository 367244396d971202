using System.Text;
using Relay.Diagnostics;

namespace Relay.Tests.Diagnostics;

public class ProcessMetricsTests
{
    private const string Status = "Name:\trelay\nUmask:\t0022\nState:\tS (sleeping)\nVmPeak:\t 52686176 kB\nVmSize:\t 52686172 kB\nVmRSS:\t   70312 kB\nVmData:\t  157716 kB\nThreads:\t19\nSigQ:\t0/95860\n";

    [Theory]
    [InlineData("VmSize:", 52686172)]
    [InlineData("VmRSS:", 70312)]
    [InlineData("VmData:", 157716)]
    [InlineData("Threads:", 19)]
    public void StatusLines_AreRead(string key, long expected) =>
        Assert.Equal(expected, ProcFiles.Field(Encoding.ASCII.GetBytes(Status), Encoding.ASCII.GetBytes(key)));

    [Theory]
    [InlineData("VmSwap:")] // absent
    [InlineData("Peak:")] // only inside another key, never at a line's start
    public void AKeyNotAtALineStart_ReadsAsZero(string key) =>
        Assert.Equal(0, ProcFiles.Field(Encoding.ASCII.GetBytes(Status), Encoding.ASCII.GetBytes(key)));

    [Fact]
    public void AKeyInsideAnotherLine_IsSkippedForItsOwnLine() =>
        Assert.Equal(42, ProcFiles.Field("NotVmRSS:\t1 kB\nVmRSS:\t42 kB\n"u8, "VmRSS:"u8));

    [Fact]
    public void AValueThatIsNotANumber_ReadsAsZero() =>
        Assert.Equal(0, ProcFiles.Field("VmRSS:\tlots kB\n"u8, "VmRSS:"u8));
}
