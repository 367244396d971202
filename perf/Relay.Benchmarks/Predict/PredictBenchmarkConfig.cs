using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Toolchains.InProcess.Emit;

namespace Relay.Benchmarks.Predict;

/// <summary>
/// Short runs in process: the machine is shared (STYLE.md 7), and BenchmarkDotNet's generated
/// project fails to build here when another builder uses the same artifacts folder
/// (CS0016 on Relay.Predict.xml), so the Predict benchmarks run in the host process.
/// </summary>
public sealed class PredictBenchmarkConfig : ManualConfig
{
    public PredictBenchmarkConfig()
    {
        AddJob(Job.ShortRun.WithToolchain(InProcessEmitToolchain.Instance).WithId("ShortRun-InProcess"));
        AddDiagnoser(MemoryDiagnoser.Default);
    }
}
