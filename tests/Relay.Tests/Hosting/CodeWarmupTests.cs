using Relay.Echo.Splice;
using Relay.Hosting;

namespace Relay.Tests.Hosting;

public class CodeWarmupTests
{
    [Fact]
    public void Prepare_CompilesATypesMethodsAndItsAsyncStateMachines()
    {
        // The constructor, Add, AddLaterAsync's stub, and its state machine's MoveNext (plus
        // SetStateMachine); the generic method and the abstract one are skipped without an error.
        var count = CodeWarmup.Prepare([typeof(Sample)]);

        Assert.InRange(count, 5, 8);
    }

    [Fact]
    public void Prepare_SkipsOpenGenericTypes_AndCountsNothingForThem()
    {
        Assert.Equal(0, CodeWarmup.Prepare([typeof(Dictionary<,>)]));
    }

    [Fact]
    public async Task StartInBackground_CompilesTheSplicePath_AndReportsWhatItDid()
    {
        var reported = new TaskCompletionSource<(int Methods, TimeSpan Took)>(TaskCreationOptions.RunContinuationsAsynchronously);

        await CodeWarmup.StartInBackground((methods, took) => reported.TrySetResult((methods, took)), typeof(SplicedSession), typeof(AgentLink));

        var (methods, took) = await reported.Task.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.True(methods > 50, $"only {methods} method(s) compiled");
        Assert.True(took >= TimeSpan.Zero);
    }

    private abstract class Sample
    {
        private int _total;

        public int Add(int value) => _total += value;

        public async Task<int> AddLaterAsync(int value)
        {
            await Task.Yield();
            return Add(value);
        }

        public static T Echo<T>(T value) => value;

        public abstract void Nothing();
    }
}
