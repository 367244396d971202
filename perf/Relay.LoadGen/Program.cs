using System.Runtime.InteropServices;
using Relay.LoadGen;

var errors = new List<string>();
var options = LoadGenOptions.Parse(args, errors);
if (options is null)
{
    foreach (var error in errors)
    {
        Console.Error.WriteLine($"relay-loadgen: {error}");
    }

    Console.Error.WriteLine("relay-loadgen: see --help");
    return 2;
}

if (options.ShowHelp)
{
    Console.Out.WriteLine(LoadGenOptions.Usage);
    return 0;
}

using var shutdown = new CancellationTokenSource();
using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, Stop);
using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Stop);

RunResult result;
try
{
    result = options.Mode switch
    {
        Mode.RequestResponse => await new RequestResponseRun(options).RunAsync().ConfigureAwait(false),
        Mode.Stream => await new StreamRun(options).RunAsync().ConfigureAwait(false),
        Mode.Idle => await new IdleRun(options).RunAsync().ConfigureAwait(false),
        _ => await new EchoServer(options).RunAsync(shutdown.Token).ConfigureAwait(false),
    };
}
catch (InvalidOperationException ex)
{
    Console.Error.WriteLine($"relay-loadgen: {ex.Message}");
    return 1;
}

Console.Out.WriteLine(result.ToJson());
Console.Out.WriteLine(result.ToHumanLine());
var failed = result.Errors + result.ConnectFailures > 0
    || (options.Mode is Mode.RequestResponse or Mode.Stream && result.Ops == 0);
return failed ? 1 : 0;

void Stop(PosixSignalContext context)
{
    // Only the server runs until signalled; let it stop accepting and print its summary.
    if (options.Mode == Mode.Serve)
    {
        context.Cancel = true;
        shutdown.Cancel();
    }
}
