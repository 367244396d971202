using System.Diagnostics;

namespace Relay.FunctionalTests.Infrastructure;

/// <summary>A real program from the machine (redis-server, redis-cli) or the published relay, ended by its PID.</summary>
public sealed class ExternalProcess : IDisposable
{
    private readonly Process _process;

    private ExternalProcess(Process process) => _process = process;

    public int Id => _process.Id;

    public bool HasExited => _process.HasExited;

    public int ExitCode => _process.ExitCode;

    public bool WaitForExit(int milliseconds) => _process.WaitForExit(milliseconds);

    public static string? Find(string name)
    {
        foreach (var directory in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Concat(["/usr/bin", "/usr/sbin", "/usr/local/bin"]))
        {
            var candidate = Path.Combine(directory, name);
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        return null;
    }

    public static ExternalProcess Start(string path, params string[] args) => StartLogged(path, null, args);

    /// <summary>Starts <paramref name="path"/>; its stdout and stderr go to <paramref name="log"/> when given, else nowhere.</summary>
    public static ExternalProcess StartLogged(string path, string? log, params string[] args)
    {
        var info = new ProcessStartInfo(path) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        var process = Process.Start(info) ?? throw new InvalidOperationException($"{path} did not start");
        if (log is null)
        {
            process.OutputDataReceived += static (_, _) => { };
            process.ErrorDataReceived += static (_, _) => { };
        }
        else
        {
            var writer = TextWriter.Synchronized(new StreamWriter(log) { AutoFlush = true });
            process.OutputDataReceived += (_, e) => writer.WriteLine(e.Data);
            process.ErrorDataReceived += (_, e) => writer.WriteLine(e.Data);
            process.Exited += (_, _) => writer.Dispose();
            process.EnableRaisingEvents = true;
        }

        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return new ExternalProcess(process);
    }

    public static async Task<(int ExitCode, string StdOut, string StdErr)> RunAsync(string path, TimeSpan timeout, params string[] args)
    {
        var info = new ProcessStartInfo(path) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        try
        {
            await process.WaitForExitAsync().WaitAsync(timeout);
        }
        catch (TimeoutException)
        {
            process.Kill(entireProcessTree: true);
            throw;
        }

        return (process.ExitCode, await stdout, await stderr);
    }

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            _process.WaitForExit(10_000);
        }

        _process.Dispose();
    }
}
