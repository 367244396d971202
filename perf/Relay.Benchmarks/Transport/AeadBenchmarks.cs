using System.Security.Cryptography;
using BenchmarkDotNet.Attributes;
using Relay.Transport.Crypto;
using Relay.Transport.Framing;

namespace Relay.Benchmarks.Transport;

/// <summary>Seal then open one 1.2 KB datagram (header as AAD, 16-byte tag), as the channel does per packet.</summary>
[MemoryDiagnoser]
#pragma warning disable CA1001 // BenchmarkDotNet needs an unsealed class; [GlobalCleanup] disposes the ciphers.
public class AeadBenchmarks
#pragma warning restore CA1001
{
    private const int PayloadBytes = 1200;
    private PacketProtector _sealer = null!;
    private PacketProtector _opener = null!;
    private readonly byte[] _payload = new byte[PayloadBytes];
    private readonly byte[] _datagram = new byte[PayloadBytes + WireFormat.OverheadBytes];
    private readonly byte[] _plain = new byte[PayloadBytes];
    private ulong _packetNumber;

    /// <summary>"aes-ni" (the default where the CPU has it), "openssl" (the framework's AesGcm) or "chacha20-poly1305".</summary>
    [Params("aes-ni", "openssl", "chacha20-poly1305")]
    public string Implementation { get; set; } = "aes-ni";

    [GlobalSetup]
    public void Setup()
    {
        var keys = TransportKeys.Derive(RandomNumberGenerator.GetBytes(32), RandomNumberGenerator.GetBytes(32), RandomNumberGenerator.GetBytes(32));
        var algorithm = Implementation == "chacha20-poly1305" ? AeadAlgorithm.ChaCha20Poly1305 : AeadAlgorithm.Aes256Gcm;
        _sealer = new PacketProtector(algorithm, keys.ClientToServer, frameworkAes: Implementation == "openssl");
        _opener = new PacketProtector(algorithm, keys.ClientToServer, frameworkAes: Implementation == "openssl");
        if (_sealer.Implementation != Implementation)
        {
            throw new InvalidOperationException($"asked for {Implementation}, got {_sealer.Implementation} on this CPU");
        }

        Random.Shared.NextBytes(_payload);
        if (!SealOpen())
        {
            throw new InvalidOperationException("seal/open round trip failed");
        }

        // The machine is shared: also report process CPU time per operation, which preemption by
        // other builders does not inflate the way it inflates wall-clock time.
        const int Operations = 200_000;
        var cpuBefore = Environment.CpuUsage.TotalTime;
        var wall = System.Diagnostics.Stopwatch.StartNew();
        for (var i = 0; i < Operations; i++)
        {
            SealOpen();
        }

        var cpu = Environment.CpuUsage.TotalTime - cpuBefore;
        Console.WriteLine($"// aead {Implementation}: {cpu.TotalMicroseconds / Operations:F3} us CPU per seal+open, {wall.Elapsed.TotalMicroseconds / Operations:F3} us wall");
    }

    [Benchmark]
    public bool SealOpen()
    {
        _sealer.Seal(PacketType.Data, 0, _packetNumber++, _payload, _datagram);
        WireFormat.TryParseHeader(_datagram, 65507, out var header, out _);
        return _opener.TryOpen(_datagram, header, _plain);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _sealer.Dispose();
        _opener.Dispose();
    }
}
