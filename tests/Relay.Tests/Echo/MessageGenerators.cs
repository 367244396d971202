using System.Buffers.Binary;
using System.Text;

namespace Relay.Tests.Echo;

/// <summary>Random, valid streams for each codec, with the offsets where their messages end.</summary>
internal static class MessageGenerators
{
    internal sealed record Stream(byte[] Bytes, List<(long End, bool Separator)> Ends);

    public static Stream Lines(Random random, int count, int maxLine)
    {
        var output = new MemoryStream();
        var ends = new List<(long, bool)>();
        for (var i = 0; i < count; i++)
        {
            var length = random.Next(0, maxLine);
            for (var j = 0; j < length; j++)
            {
                var b = (byte)random.Next(0, 256);
                output.WriteByte(b == (byte)'\n' ? (byte)'x' : b);
            }

            if (random.Next(2) == 0)
            {
                output.WriteByte((byte)'\r');
            }

            output.WriteByte((byte)'\n');
            ends.Add((output.Length, false));
        }

        return new Stream(output.ToArray(), ends);
    }

    public static Stream LengthPrefixed(Random random, int count, int headerBytes, int maxBody)
    {
        var output = new MemoryStream();
        var ends = new List<(long, bool)>();
        Span<byte> header = stackalloc byte[4];
        for (var i = 0; i < count; i++)
        {
            var length = random.Next(0, 4) == 0 ? 0 : random.Next(0, maxBody);
            if (headerBytes == 2)
            {
                BinaryPrimitives.WriteUInt16BigEndian(header, (ushort)length);
            }
            else
            {
                BinaryPrimitives.WriteUInt32BigEndian(header, (uint)length);
            }

            output.Write(header[..headerBytes]);
            var body = new byte[length];
            random.NextBytes(body);
            output.Write(body);
            ends.Add((output.Length, false));
        }

        return new Stream(output.ToArray(), ends);
    }

    /// <summary>RESP2/RESP3 replies of every type, nested, with attributes and pushes.</summary>
    public static Stream RespReplies(Random random, int count)
    {
        var text = new StringBuilder();
        var output = new MemoryStream();
        var ends = new List<(long, bool)>();
        for (var i = 0; i < count; i++)
        {
            if (random.Next(6) == 0)
            {
                AppendAttribute(random, output, 2);
            }

            AppendReply(random, output, depth: random.Next(0, 4));
            ends.Add((output.Length, false));
        }

        return new Stream(output.ToArray(), ends);
    }

    /// <summary>Commands as Redis clients send them: arrays of bulk strings, inline commands, and no-op requests.</summary>
    public static Stream RespRequests(Random random, int count)
    {
        var output = new MemoryStream();
        var ends = new List<(long, bool)>();
        for (var i = 0; i < count; i++)
        {
            var separator = false;
            switch (random.Next(10))
            {
                case 0:
                    Write(output, random.Next(2) == 0 ? "PING\r\n" : $"SET k{random.Next(100)} \"v {random.Next()}\"\n");
                    break;
                case 1:
                    Write(output, random.Next(3) switch { 0 => "\r\n", 1 => "  \t\n", _ => random.Next(2) == 0 ? "*0\r\n" : "*-1\r\n" });
                    separator = true;
                    break;
                default:
                    var args = random.Next(1, 6);
                    Write(output, $"*{args}\r\n");
                    for (var a = 0; a < args; a++)
                    {
                        AppendBulk(random, output, '$', 40);
                    }

                    break;
            }

            ends.Add((output.Length, separator));
        }

        return new Stream(output.ToArray(), ends);
    }

    private static void AppendAttribute(Random random, MemoryStream output, int depth)
    {
        var pairs = random.Next(0, 3);
        Write(output, $"|{pairs}\r\n");
        for (var p = 0; p < pairs; p++)
        {
            Write(output, $"+key{p}\r\n");
            AppendReply(random, output, depth - 1);
        }
    }

    private static void AppendReply(Random random, MemoryStream output, int depth)
    {
        var kinds = depth > 0 ? 21 : 14;
        switch (random.Next(kinds))
        {
            case 0: Write(output, $"+OK {random.Next()}\r\n"); break;
            case 1: Write(output, "-ERR wrong type\r\n"); break;
            case 2: Write(output, $":{random.Next(-1000, 1000)}\r\n"); break;
            case 3: AppendBulk(random, output, '$', 300); break;
            case 4: Write(output, "$-1\r\n"); break;
            case 5: Write(output, "*-1\r\n"); break;
            case 6: Write(output, "_\r\n"); break;
            case 7: Write(output, random.Next(2) == 0 ? "#t\r\n" : "#f\r\n"); break;
            case 8: Write(output, random.Next(3) switch { 0 => ",3.14\r\n", 1 => ",-inf\r\n", _ => ",nan\r\n" }); break;
            case 9: Write(output, "(3492890328409238509324850943850943825024385\r\n"); break;
            case 10: AppendBulk(random, output, '!', 50); break;
            case 11:
                var body = "txt:" + new string('v', random.Next(0, 20));
                Write(output, $"={body.Length}\r\n{body}\r\n");
                break;
            case 12: Write(output, "*0\r\n"); break;
            case 13: Write(output, $":+{random.Next(1000)}\r\n"); break;
            default:
                var kind = "*%~>"[random.Next(4)];
                var n = random.Next(0, 4);
                Write(output, $"{kind}{n}\r\n");
                var elements = kind == '%' ? 2 * n : n;
                for (var e = 0; e < elements; e++)
                {
                    if (random.Next(8) == 0)
                    {
                        AppendAttribute(random, output, depth - 1);
                    }

                    AppendReply(random, output, depth - 1);
                }

                break;
        }
    }

    private static void AppendBulk(Random random, MemoryStream output, char kind, int maxLength)
    {
        var body = new byte[random.Next(0, maxLength)];
        random.NextBytes(body); // binary-safe: CR, LF and '*' inside a payload must not matter
        Write(output, $"{kind}{body.Length}\r\n");
        output.Write(body);
        Write(output, "\r\n");
    }

    private static void Write(MemoryStream output, string text) => output.Write(Encoding.ASCII.GetBytes(text));
}
