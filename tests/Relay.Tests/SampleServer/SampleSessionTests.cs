using Relay.SampleServer;

namespace Relay.Tests.SampleServer;

public class SampleSessionTests
{
    [Fact]
    public void Answers_DependOnlyOnHistory()
    {
        var a = new SampleSession("a");
        var b = new SampleSession("b");
        string[] script = ["MOVE 1 1", "SCORE 3", "ECHO x", "STATE"];
        Assert.Equal(script.Select(a.Handle), script.Select(b.Handle));
        Assert.Equal("5 WHO a", a.Handle("WHO"));
    }

    [Theory]
    [InlineData("", "1 ERR empty message")]
    [InlineData("MOVE 1", "1 ERR usage: MOVE <dx> <dy> (whole numbers from -1000000 to 1000000)")]
    [InlineData("MOVE 1 99999999", "1 ERR usage: MOVE <dx> <dy> (whole numbers from -1000000 to 1000000)")]
    [InlineData("SCORE many", "1 ERR usage: SCORE <points> (a whole number from -1000000 to 1000000)")]
    [InlineData("quit", "1 BYE 1")]
    public void BadOrOddInput_GetsAClearAnswer(string line, string expected) => Assert.Equal(expected, new SampleSession("s").Handle(line));
}
