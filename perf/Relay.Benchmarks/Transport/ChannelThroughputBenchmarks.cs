using System.Net;
using System.Security.Cryptography;
using BenchmarkDotNet.Attributes;
using Relay.Transport.Crypto;
using Relay.Transport.Multipath;
using Relay.Transport.Sockets;

namespace Relay.Benchmarks.Transport;

/// <summary>
/// Frames of 1 KiB through a whole channel (batching, LZ4 attempt, RS parity, AEAD, UDP) over one
/// loopback path, sender and receiver in this process. One operation = one frame delivered in order;
/// frames/s = 1e9 / Mean(ns).
/// </summary>
[MemoryDiagnoser]
public class ChannelThroughputBenchmarks
{
    private const int Frames = 20_000;
    private MultipathChannel _client = null!;
    private MultipathChannel _server = null!;
    private UdpDatagramSocket? _serverSocket;
    private readonly byte[] _frame = new byte[1024];
    private readonly byte[] _receive = new byte[8192];

    [Params("plain", "gso", "gso+gro")]
    public string Sockets { get; set; } = "plain";

    private bool Gso => Sockets.StartsWith("gso", StringComparison.Ordinal);

    [GlobalSetup]
    public void Setup()
    {
        var keys = TransportKeys.Derive(RandomNumberGenerator.GetBytes(32), RandomNumberGenerator.GetBytes(32), RandomNumberGenerator.GetBytes(32));
        var a = UdpDatagramSocket.Bind(new IPEndPoint(IPAddress.Loopback, 0), new IPEndPoint(IPAddress.Loopback, 9));
        var b = UdpDatagramSocket.Bind(new IPEndPoint(IPAddress.Loopback, 0), a.LocalEndPoint);
        a.SetRemote(b.LocalEndPoint);
        _serverSocket = b;
        var options = new MultipathChannelOptions { UseGso = Gso, UseGro = Sockets.EndsWith("gro", StringComparison.Ordinal) };
        _client = MultipathChannel.Start(options, keys, isClient: true, [a]);
        _server = MultipathChannel.Start(options, keys, isClient: false, [b]);
        if (Gso && a.GsoSegmentBytes == 0)
        {
            throw new InvalidOperationException("UDP GSO is not available on this kernel.");
        }

        Random.Shared.NextBytes(_frame);

        // Warm up past tiered compilation (a method is rejitted after 30 calls and a short delay),
        // so the CPU figure below is the steady state's, not the JIT's.
        for (var i = 0; i < 10; i++)
        {
            TransferAsync().GetAwaiter().GetResult();
        }

        // Tier-1 code is compiled on a background thread after that delay: let it land before measuring.
        Thread.Sleep(200);

        // "One core's worth": frames per CPU-second of this process (sender and receiver together),
        // which preemption by other builders on the shared machine does not distort.
        const int Rounds = 10;
        var cpuBefore = Environment.CpuUsage.TotalTime;
        var wall = System.Diagnostics.Stopwatch.StartNew();
        for (var i = 0; i < Rounds; i++)
        {
            TransferAsync().GetAwaiter().GetResult();
        }

        var cpu = Environment.CpuUsage.TotalTime - cpuBefore;
        Console.WriteLine($"// channel {Sockets}: {Rounds * Frames / cpu.TotalSeconds:F0} frames per CPU-second, {Rounds * Frames / wall.Elapsed.TotalSeconds:F0} frames/s wall");
    }

    [Benchmark(OperationsPerInvoke = Frames)]
    public Task Frames1KiB() => TransferAsync();

    private async Task TransferAsync()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var receiver = Task.Run(async () =>
        {
            for (var i = 0; i < Frames; i++)
            {
                if (await _server.ReceiveAsync(_receive, cts.Token).ConfigureAwait(false) != _frame.Length)
                {
                    throw new InvalidOperationException("wrong frame length");
                }
            }
        });

        for (var i = 0; i < Frames; i++)
        {
            await _client.SendAsync(_frame, cts.Token).ConfigureAwait(false);
        }

        _client.Flush();
        await receiver.ConfigureAwait(false);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        var m = _client.GetMetrics();
        Console.WriteLine($"// coalesced receives at the server: {_serverSocket!.CoalescedReceives}");
        Console.WriteLine($"// channel: frames {m.FramesSent}, blocks {m.BlocksSent} ({(double)m.FramesSent / m.BlocksSent:F1} frames per block), last k+m {m.CurrentDataShards}+{m.CurrentParityShards}, repaired blocks {m.BlocksRepaired}, retransmitted shards {m.RetransmittedShards}, server drops {_server.GetMetrics().TotalDrops}");
        _client.DisposeAsync().AsTask().GetAwaiter().GetResult();
        _server.DisposeAsync().AsTask().GetAwaiter().GetResult();
    }
}
