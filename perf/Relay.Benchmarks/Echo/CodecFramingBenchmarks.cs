using System.Buffers.Binary;
using System.Text;
using BenchmarkDotNet.Attributes;
using Relay.Echo;

namespace Relay.Benchmarks.Echo;

/// <summary>
/// Framing throughput: one operation feeds a 1 MiB stream of typical messages through a
/// <see cref="MessageStream"/> in 16 KiB reads, as a pump would, with or without per-message
/// XxHash3 digests. MB/s = 1 MiB / Mean.
/// </summary>
[MemoryDiagnoser]
[MinColumn]
public class CodecFramingBenchmarks
{
    private const int StreamBytes = 1024 * 1024;
    private const int ReadBytes = 16 * 1024;
    private byte[] _stream = [];
    private long _messagesPerStream;
    private MessageStream _framing = null!;

    public enum Workload
    {
        /// <summary>Raw bytes, 4 KiB digest windows.</summary>
        Raw,

        /// <summary>Text lines of 20-120 bytes.</summary>
        Lines,

        /// <summary>4-byte length, 50-400 byte bodies.</summary>
        LengthPrefixed32,

        /// <summary>redis-benchmark's SET/GET commands (arrays of bulk strings), client side.</summary>
        RespRequests,

        /// <summary>Replies: +OK, bulk strings, integers and 10-element arrays, server side.</summary>
        RespReplies,
    }

    [Params(Workload.Raw, Workload.Lines, Workload.LengthPrefixed32, Workload.RespRequests, Workload.RespReplies)]
    public Workload Codec { get; set; }

    [Params(false, true)]
    public bool Digests { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        (_stream, _messagesPerStream) = Build(Codec);
        _framing = NewStream();
        var check = NewStream();
        FeedOnce(check);
        if (check.Error != FramingError.None || check.Messages != _messagesPerStream || check.SplicePoint != _stream.Length)
        {
            throw new InvalidOperationException($"framing check failed: {check.Error}, {check.Messages} of {_messagesPerStream} messages");
        }
    }

    [Benchmark]
    public long Frame()
    {
        FeedOnce(_framing);
        return _framing.Messages;
    }

    private MessageStream NewStream()
    {
        var (codec, direction) = Codec switch
        {
            Workload.Raw => (MessageCodec.Raw, StreamDirection.Response),
            Workload.Lines => (MessageCodec.Lines, StreamDirection.Response),
            Workload.LengthPrefixed32 => (MessageCodec.LengthPrefixed32, StreamDirection.Response),
            Workload.RespRequests => (MessageCodec.Resp, StreamDirection.Request),
            _ => (MessageCodec.Resp, StreamDirection.Response),
        };
        return new MessageStream(MessageFramer.Create(CodecOptions.For(codec), direction), Digests ? new DigestLog(4096) : null);
    }

    private void FeedOnce(MessageStream framing)
    {
        var stream = _stream.AsSpan();
        for (var offset = 0; offset < stream.Length; offset += ReadBytes)
        {
            framing.Feed(stream.Slice(offset, Math.Min(ReadBytes, stream.Length - offset)));
        }
    }

    private static (byte[] Bytes, long Messages) Build(Workload workload)
    {
        var random = new Random(1);
        var output = new MemoryStream();
        long messages = 0;
        while (output.Length < StreamBytes)
        {
            switch (workload)
            {
                case Workload.Raw:
                    var block = new byte[4096];
                    random.NextBytes(block);
                    output.Write(block);
                    messages++;
                    continue;
                case Workload.Lines:
                    Write(output, new string('l', random.Next(20, 120)) + "\r\n");
                    break;
                case Workload.LengthPrefixed32:
                    var body = new byte[random.Next(50, 400)];
                    var header = new byte[4];
                    BinaryPrimitives.WriteInt32BigEndian(header, body.Length);
                    output.Write(header);
                    output.Write(body);
                    break;
                case Workload.RespRequests:
                    var key = $"key:{random.Next(0, 1_000_000):D12}";
                    Write(output, random.Next(2) == 0
                        ? $"*3\r\n$3\r\nSET\r\n${key.Length}\r\n{key}\r\n$3\r\nxxx\r\n"
                        : $"*2\r\n$3\r\nGET\r\n${key.Length}\r\n{key}\r\n");
                    break;
                default:
                    switch (random.Next(4))
                    {
                        case 0: Write(output, "+OK\r\n"); break;
                        case 1: Write(output, "$3\r\nxxx\r\n"); break;
                        case 2: Write(output, $":{random.Next()}\r\n"); break;
                        default:
                            var reply = new StringBuilder("*10\r\n");
                            for (var i = 0; i < 10; i++)
                            {
                                reply.Append("$3\r\nxxx\r\n");
                            }

                            Write(output, reply.ToString());
                            break;
                    }

                    break;
            }

            messages++;
        }

        return (output.ToArray(), messages);
    }

    private static void Write(MemoryStream output, string text) => output.Write(Encoding.ASCII.GetBytes(text));
}
