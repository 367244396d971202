using Relay.Admin;
using Relay.Configuration;

namespace Relay.Tests.Hosting;

public class AdminTokenTests
{
    [Fact]
    public void WithNoTokenConfigured_OneIsGenerated_OwnerOnly_AndDeletedOnRequest()
    {
        // An environment variable nobody sets, so the generated path is taken.
        var config = new AdminConfig { TokenEnvironmentVariable = "RELAY_TEST_UNSET_" + Guid.NewGuid().ToString("N") };

        Assert.True(AdminToken.TryResolve(config, out var token, out var error), error);
        var path = Assert.IsType<string>(token!.GeneratedPath);
        try
        {
            var written = File.ReadAllText(path).TrimEnd('\n');
            Assert.Matches("^[0-9a-f]{48}$", written);
            Assert.True(token.Matches(written));
            Assert.False(token.Matches(written[..^1] + (written[^1] == '0' ? '1' : '0')));
            if (!OperatingSystem.IsWindows())
            {
                Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
            }
        }
        finally
        {
            token.DeleteGenerated();
        }

        Assert.False(File.Exists(path));
    }

    [Fact]
    public void GeneratedTokens_AreHex_AndDiffer()
    {
        var tokens = Enumerable.Range(0, 16).Select(_ => AdminToken.GenerateToken()).ToList();

        Assert.All(tokens, t => Assert.Matches("^[0-9a-f]{48}$", t));
        Assert.Equal(tokens.Count, tokens.Distinct(StringComparer.Ordinal).Count());
    }

    [Fact]
    public void StaleTokenFiles_OfProcessesThatAreGone_AreRemoved_OthersKept()
    {
        Assert.SkipUnless(OperatingSystem.IsLinux() && Directory.Exists("/proc/self"), "needs Linux /proc to tell which processes run");
        var directory = Directory.CreateTempSubdirectory("relay-token-test-").FullName;
        try
        {
            var gone = Enumerable.Range(0, 1000).Select(i => 4_000_000 - i).First(pid => !Directory.Exists($"/proc/{pid}"));
            string File(string name)
            {
                var path = Path.Combine(directory, name);
                System.IO.File.WriteAllText(path, "x\n");
                return path;
            }

            var stale = File($"relay-admin-{gone}.token");
            var mine = File($"relay-admin-{Environment.ProcessId}.token");
            var running = File("relay-admin-1.token"); // pid 1 always runs
            var notAPid = File("relay-admin-abc.token");
            var other = File("other.token");

            AdminToken.DeleteStaleGenerated(directory);

            Assert.False(System.IO.File.Exists(stale));
            Assert.All(new[] { mine, running, notAPid, other }, p => Assert.True(System.IO.File.Exists(p), p));
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }
}
