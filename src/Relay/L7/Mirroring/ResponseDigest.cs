using System.Collections.Immutable;
using System.IO.Hashing;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Primitives;

namespace Relay.L7.Mirroring;

/// <summary>What a response compares as: its status, a digest of its kept headers and one of its body.</summary>
internal readonly record struct ResponseDigest(int Status, ulong Headers, ulong Body)
{
    /// <summary>The first part that differs, or null when both match.</summary>
    public string? Difference(ResponseDigest other) =>
        Status != other.Status ? "status" : Headers != other.Headers ? "headers" : Body != other.Body ? "body" : null;

    /// <summary>
    /// Digests header pairs so that order and name case do not count: each kept header (name in
    /// lower case, values joined by commas) is hashed on its own and the hashes are added up.
    /// </summary>
    public static ulong DigestHeaders(IEnumerable<KeyValuePair<string, StringValues>> headers, ImmutableArray<string> ignore)
    {
        ulong sum = 0;
        foreach (var (name, values) in headers)
        {
            if (!Contains(ignore, name))
            {
                sum += HashHeader(name, values.Count == 1 ? values[0] ?? "" : string.Join(",", values.ToArray()));
            }
        }

        return sum;
    }

    /// <summary>The same digest straight from an upstream response, without parsing or copying its headers.</summary>
    public static ulong DigestHeaders(HttpResponseMessage response, ImmutableArray<string> ignore)
    {
        ulong sum = 0;
        foreach (var (name, values) in response.Headers.NonValidated)
        {
            if (!Contains(ignore, name))
            {
                sum += HashHeader(name, values.Count == 1 ? values.ToString() : string.Join(",", values));
            }
        }

        foreach (var (name, values) in response.Content.Headers.NonValidated)
        {
            if (!Contains(ignore, name))
            {
                sum += HashHeader(name, values.Count == 1 ? values.ToString() : string.Join(",", values));
            }
        }

        return sum;
    }

    private static ulong HashHeader(string name, string value)
    {
        var length = name.Length + 1 + Encoding.UTF8.GetMaxByteCount(value.Length);
        byte[]? rented = null;
        var buffer = length <= 1024 ? stackalloc byte[length] : (rented = System.Buffers.ArrayPool<byte>.Shared.Rent(length));
        try
        {
            var written = Encoding.ASCII.GetBytes(name, buffer);
            System.Text.Ascii.ToLowerInPlace(buffer[..written], out _);
            buffer[written++] = (byte)':';
            written += Encoding.UTF8.GetBytes(value, buffer[written..]);
            return XxHash3.HashToUInt64(buffer[..written]);
        }
        finally
        {
            if (rented is not null)
            {
                System.Buffers.ArrayPool<byte>.Shared.Return(rented);
            }
        }
    }

    /// <summary>
    /// Digests a body. A JSON body (by content type) with fields to ignore is parsed, the fields
    /// removed at any depth, and the rest digested in canonical form (Diffy's noise removal); a body
    /// that is not valid JSON is digested as bytes.
    /// </summary>
    public static ulong DigestBody(ReadOnlySpan<byte> body, string? contentType, ImmutableArray<string> ignoreJsonFields)
    {
        if (!ignoreJsonFields.IsEmpty && contentType is not null && contentType.Contains("json", StringComparison.OrdinalIgnoreCase))
        {
            try
            {
                var node = JsonNode.Parse(body);
                Strip(node, ignoreJsonFields);
                if (node is null)
                {
                    return XxHash3.HashToUInt64("null"u8);
                }

                var canonical = new System.Buffers.ArrayBufferWriter<byte>(body.Length);
                using (var writer = new Utf8JsonWriter(canonical))
                {
                    node.WriteTo(writer);
                }

                return XxHash3.HashToUInt64(canonical.WrittenSpan);
            }
            catch (JsonException)
            {
                // Not JSON after all: compare it byte for byte.
            }
        }

        return XxHash3.HashToUInt64(body);
    }

    private static void Strip(JsonNode? node, ImmutableArray<string> fields)
    {
        switch (node)
        {
            case JsonObject obj:
                foreach (var field in fields)
                {
                    obj.Remove(field);
                }

                foreach (var (_, child) in obj)
                {
                    Strip(child, fields);
                }

                break;
            case JsonArray array:
                foreach (var child in array)
                {
                    Strip(child, fields);
                }

                break;
        }
    }

    private static bool Contains(ImmutableArray<string> set, string name)
    {
        foreach (var item in set)
        {
            if (string.Equals(item, name, StringComparison.OrdinalIgnoreCase))
            {
                return true;
            }
        }

        return false;
    }
}
