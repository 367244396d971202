using System.Diagnostics;
using System.Net;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using Relay.Transport.Sockets;

namespace Relay.Transport.Tests.Support;

/// <summary>
/// Two network namespaces joined by N veth pairs (path i: 10.231.i.1 in A, 10.231.i.2 in B), with
/// nftables random drop on each side's ingress. Names are unique per instance; Dispose deletes both
/// namespaces (which removes the veths and the nftables tables with them), also after a failure.
/// </summary>
internal sealed partial class NetNamespaceLab : IDisposable
{
    private const int CloneNewNet = 0x40000000;
    private readonly List<string> _namespaces = [];
    private readonly string _id = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(3));

    private NetNamespaceLab(int paths)
    {
        Paths = paths;
        NamespaceA = $"rlyt-a-{_id}";
        NamespaceB = $"rlyt-b-{_id}";
    }

    public int Paths { get; }

    public string NamespaceA { get; }

    public string NamespaceB { get; }

    /// <summary>Why the lab cannot run here, or null when it can (root, ip and nft present, Linux).</summary>
    public static string? Unavailable()
    {
        if (!OperatingSystem.IsLinux())
        {
            return "network namespaces need Linux";
        }

        if (Environment.UserName != "root" && geteuid() != 0)
        {
            return "network namespaces and nftables need root";
        }

        foreach (var tool in new[] { "ip", "nft" })
        {
            if (!new[] { "/usr/sbin", "/sbin", "/usr/bin", "/bin" }.Any(d => File.Exists(Path.Combine(d, tool))))
            {
                return $"'{tool}' is not installed (iproute2 / nftables)";
            }
        }

        return null;
    }

    public static NetNamespaceLab Create(int paths)
    {
        var lab = new NetNamespaceLab(paths);
        try
        {
            lab.Setup();
            return lab;
        }
        catch
        {
            lab.Dispose();
            throw;
        }
    }

    private void Setup()
    {
        foreach (var ns in new[] { NamespaceA, NamespaceB })
        {
            Run("ip", "netns", "add", ns);
            _namespaces.Add(ns);
            Run("ip", "-n", ns, "link", "set", "lo", "up");
        }

        for (var i = 0; i < Paths; i++)
        {
            string va = VethA(i), vb = VethB(i);
            Run("ip", "link", "add", va, "netns", NamespaceA, "type", "veth", "peer", "name", vb, "netns", NamespaceB);
            Run("ip", "-n", NamespaceA, "addr", "add", $"10.231.{i}.1/24", "dev", va);
            Run("ip", "-n", NamespaceB, "addr", "add", $"10.231.{i}.2/24", "dev", vb);
            Run("ip", "-n", NamespaceA, "link", "set", va, "up");
            Run("ip", "-n", NamespaceB, "link", "set", vb, "up");
        }
    }

    private string VethA(int i) => $"ra{i}{_id}";

    private string VethB(int i) => $"rb{i}{_id}";

    public static IPAddress AddressA(int path) => IPAddress.Parse($"10.231.{path}.1");

    public static IPAddress AddressB(int path) => IPAddress.Parse($"10.231.{path}.2");

    /// <summary>
    /// Drops <paramref name="lossPercent"/>% of datagrams arriving on every path, in both
    /// directions, with nftables <c>numgen random mod 100 &lt; N drop</c>; paths in
    /// <paramref name="deadPaths"/> drop everything.
    /// </summary>
    public void SetLoss(int lossPercent, params int[] deadPaths) =>
        SetPathLoss([.. Enumerable.Range(0, Paths).Select(i => deadPaths.Contains(i) ? 100 : lossPercent)]);

    /// <summary>
    /// Drops <c>lossPercentByPath[i]</c>% of the datagrams arriving on path i, in both directions
    /// (100 drops everything: the path is cut); paths beyond the array lose nothing. Replaces any
    /// earlier setting.
    /// </summary>
    public void SetPathLoss(params int[] lossPercentByPath)
    {
        foreach (var (ns, veth) in new[] { (NamespaceA, (Func<int, string>)VethA), (NamespaceB, VethB) })
        {
            var rules = new System.Text.StringBuilder();
            rules.AppendLine("table inet relaytest {").AppendLine("  chain input {").AppendLine("    type filter hook input priority 0; policy accept;");
            for (var i = 0; i < Paths && i < lossPercentByPath.Length; i++)
            {
                if (lossPercentByPath[i] >= 100)
                {
                    rules.AppendLine($"    iifname \"{veth(i)}\" meta l4proto udp drop");
                }
                else if (lossPercentByPath[i] > 0)
                {
                    rules.AppendLine($"    iifname \"{veth(i)}\" meta l4proto udp numgen random mod 100 < {lossPercentByPath[i]} drop");
                }
            }

            rules.AppendLine("  }").AppendLine("}");
            Run("ip", "netns", "exec", ns, "nft", "flush", "ruleset");
            RunWithInput(rules.ToString(), "ip", "netns", "exec", ns, "nft", "-f", "-");
        }
    }

    /// <summary>UDP sockets for every path: A's bound in namespace A, B's in namespace B, aimed at each other.</summary>
    public (UdpDatagramSocket[] A, UdpDatagramSocket[] B) CreateSockets()
    {
        var a = InNamespace(NamespaceA, () => Enumerable.Range(0, Paths)
            .Select(i => UdpDatagramSocket.Bind(new IPEndPoint(AddressA(i), 40000 + i), new IPEndPoint(AddressB(i), 41000 + i))).ToArray());
        var b = InNamespace(NamespaceB, () => Enumerable.Range(0, Paths)
            .Select(i => UdpDatagramSocket.Bind(new IPEndPoint(AddressB(i), 41000 + i), new IPEndPoint(AddressA(i), 40000 + i))).ToArray());
        return (a, b);
    }

    /// <summary>
    /// One UDP socket created in <paramref name="ns"/> (<see cref="NamespaceA"/> or
    /// <see cref="NamespaceB"/>), bound to <paramref name="local"/> on a free port and aimed at
    /// <paramref name="remote"/>: e.g. a relay's path i on <see cref="AddressA"/>(i), an agent's on
    /// <see cref="AddressB"/>(i).
    /// </summary>
    public UdpDatagramSocket CreateSocket(string ns, IPAddress local, IPEndPoint remote)
    {
        if (ns != NamespaceA && ns != NamespaceB)
        {
            throw new ArgumentException($"'{ns}' is not one of this lab's namespaces", nameof(ns));
        }

        return InNamespace(ns, () => UdpDatagramSocket.Bind(new IPEndPoint(local, 0), remote));
    }

    /// <summary>
    /// Runs <paramref name="create"/> on a fresh thread switched into <paramref name="ns"/> with setns(2):
    /// sockets keep the namespace they were created in, whichever thread uses them later.
    /// </summary>
    private static T InNamespace<T>(string ns, Func<T> create)
    {
        T? result = default;
        Exception? error = null;
        var thread = new Thread(() =>
        {
            try
            {
                using var target = File.OpenHandle($"/run/netns/{ns}");
                if (setns((int)target.DangerousGetHandle(), CloneNewNet) != 0)
                {
                    throw new InvalidOperationException($"setns({ns}) failed: errno {Marshal.GetLastPInvokeError()}");
                }

                // The thread ends after this; it never returns to the root namespace.
                result = create();
            }
            catch (Exception ex)
            {
                error = ex;
            }
        });
        thread.Start();
        if (!thread.Join(TimeSpan.FromSeconds(10)))
        {
            throw new TimeoutException("Creating sockets in the namespace timed out.");
        }

        if (error is not null)
        {
            throw new InvalidOperationException("Could not create sockets in " + ns, error);
        }

        return result!;
    }

    private static void Run(params string[] args) => RunWithInput(null, args);

    private static void RunWithInput(string? stdin, params string[] args)
    {
        var psi = new ProcessStartInfo(args[0]) { RedirectStandardError = true, RedirectStandardOutput = true, RedirectStandardInput = stdin is not null };
        foreach (var arg in args.Skip(1))
        {
            psi.ArgumentList.Add(arg);
        }

        using var process = Process.Start(psi)!;
        if (stdin is not null)
        {
            process.StandardInput.Write(stdin);
            process.StandardInput.Close();
        }

        var stderr = process.StandardError.ReadToEndAsync();
        _ = process.StandardOutput.ReadToEnd();
        if (!process.WaitForExit(10_000))
        {
            process.Kill();
            throw new TimeoutException(string.Join(' ', args) + " timed out");
        }

        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"'{string.Join(' ', args)}' failed ({process.ExitCode}): {stderr.Result}");
        }
    }

    public void Dispose()
    {
        foreach (var ns in _namespaces)
        {
            try
            {
                Run("ip", "netns", "del", ns);
            }
            catch (InvalidOperationException)
            {
                // Already gone; nothing else to clean: veths and nftables tables die with the namespace.
            }
        }

        _namespaces.Clear();
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int setns(int fd, int nstype);

    [LibraryImport("libc")]
    private static partial uint geteuid();
}
