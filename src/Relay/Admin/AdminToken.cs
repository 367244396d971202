using System.Globalization;
using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using System.Text;
using Relay.Configuration;

namespace Relay.Admin;

/// <summary>Where the admin bearer token comes from: a file, the environment, or generated at start.</summary>
public sealed class AdminToken
{
    private readonly byte[] _token;

    private AdminToken(string token, string source, string? generatedPath)
    {
        _token = Encoding.UTF8.GetBytes(token);
        Source = source;
        GeneratedPath = generatedPath;
    }

    public string Source { get; }

    /// <summary>Set when no token was configured and one was generated and written here.</summary>
    public string? GeneratedPath { get; }

    /// <summary>Checks a presented token in constant time.</summary>
    public bool Matches(ReadOnlySpan<char> presented)
    {
        Span<byte> buffer = stackalloc byte[256];
        if (presented.Length > 200)
        {
            return false;
        }

        var count = Encoding.UTF8.GetBytes(presented, buffer);
        return CryptographicOperations.FixedTimeEquals(buffer[..count], _token);
    }

    public static bool TryResolve(AdminConfig config, out AdminToken? token, out string? error)
    {
        token = null;
        error = null;
        if (config.TokenFile is { } file)
        {
            string text;
            try
            {
                text = File.ReadAllText(file);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                error = $"admin.tokenFile: cannot read \"{file}\": {ex.Message}";
                return false;
            }

            var line = text.Split('\n', 2)[0].Trim();
            if (line.Length < 16)
            {
                error = $"admin.tokenFile: the token in \"{file}\" is {(line.Length == 0 ? "empty" : "shorter than 16 characters")}";
                return false;
            }

            token = new AdminToken(line, $"file {file}", null);
            return true;
        }

        var fromEnvironment = Environment.GetEnvironmentVariable(config.TokenEnvironmentVariable);
        if (!string.IsNullOrWhiteSpace(fromEnvironment))
        {
            if (fromEnvironment.Trim().Length < 16)
            {
                error = $"admin: the token in ${config.TokenEnvironmentVariable} is shorter than 16 characters";
                return false;
            }

            token = new AdminToken(fromEnvironment.Trim(), $"environment variable {config.TokenEnvironmentVariable}", null);
            return true;
        }

        var generated = GenerateToken();
        var directory = Environment.GetEnvironmentVariable("XDG_RUNTIME_DIR") is { Length: > 0 } runtimeDir && Directory.Exists(runtimeDir) ? runtimeDir : Path.GetTempPath();
        DeleteStaleGenerated(directory);
        var path = Path.Combine(directory, $"{GeneratedPrefix}{Environment.ProcessId}{GeneratedSuffix}");
        try
        {
            var fileOptions = new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write };
            if (!OperatingSystem.IsWindows())
            {
                fileOptions.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
            }

            using var stream = new FileStream(path, fileOptions);
            stream.Write(Encoding.UTF8.GetBytes(generated + "\n"));
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            error = $"admin: no token configured (admin.tokenFile or ${config.TokenEnvironmentVariable}) and none could be written to {path}: {ex.Message}";
            return false;
        }

        token = new AdminToken(generated, $"generated file {path}", path);
        return true;
    }

    private const string GeneratedPrefix = "relay-admin-";
    private const string GeneratedSuffix = ".token";

    /// <summary>
    /// 24 random bytes as hex. On Linux they come from the kernel's generator (/dev/urandom), which
    /// is what OpenSSL seeds from: loading OpenSSL only for this would cost the process about 5 MiB.
    /// </summary>
    internal static string GenerateToken()
    {
        Span<byte> bytes = stackalloc byte[24];
        if (OperatingSystem.IsLinux())
        {
            using var random = new FileStream("/dev/urandom", FileMode.Open, FileAccess.Read, FileShare.ReadWrite, bufferSize: 0);
            random.ReadExactly(bytes);
        }
        else
        {
            FillFromCryptography(bytes);
        }

        return Convert.ToHexStringLower(bytes);
    }

    /// <summary>
    /// Apart from <see cref="GenerateToken"/>, so that compiling that method on Linux does not load
    /// System.Security.Cryptography for a call it never makes.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void FillFromCryptography(Span<byte> bytes) => RandomNumberGenerator.Fill(bytes);

    /// <summary>
    /// Removes token files that relays killed without a chance to clean up left in the directory:
    /// those named for a process id that no longer runs. Linux only, where /proc says which do.
    /// </summary>
    internal static void DeleteStaleGenerated(string directory)
    {
        if (!OperatingSystem.IsLinux() || !Directory.Exists("/proc/self"))
        {
            return;
        }

        IEnumerable<string> files;
        try
        {
            files = Directory.EnumerateFiles(directory, GeneratedPrefix + "*" + GeneratedSuffix);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return;
        }

        foreach (var file in files)
        {
            var name = Path.GetFileName(file.AsSpan());
            var digits = name[GeneratedPrefix.Length..^GeneratedSuffix.Length];
            if (!int.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out var pid)
                || pid == Environment.ProcessId || Directory.Exists($"/proc/{pid}"))
            {
                continue;
            }

            try
            {
                File.Delete(file);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                // Another user's file, or another relay got there first: not ours to insist on.
            }
        }
    }

    public void DeleteGenerated()
    {
        if (GeneratedPath is not null)
        {
            try
            {
                File.Delete(GeneratedPath);
            }
            catch (IOException)
            {
                // Best effort: the token dies with the process anyway.
            }
        }
    }
}
