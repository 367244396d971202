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
    /// Digests header pairs in a canonical order (lower-case names, sorted, values joined), leaving
    /// out the ignored names, so that header order and case do not count as differences.
    /// </summary>
    public static ulong DigestHeaders(IEnumerable<KeyValuePair<string, StringValues>> headers, ImmutableArray<string> ignore)
    {
        var kept = new List<string>();
        foreach (var (name, values) in headers)
        {
            if (Contains(ignore, name))
            {
                continue;
            }

            kept.Add(name.ToLowerInvariant() + ":" + string.Join(",", values.ToArray()));
        }

        kept.Sort(StringComparer.Ordinal);
        var hash = new XxHash3();
        foreach (var line in kept)
        {
            hash.Append(Encoding.UTF8.GetBytes(line));
            hash.Append("\n"u8);
        }

        return hash.GetCurrentHashAsUInt64();
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
                var canonical = node is null ? "null"u8.ToArray() : JsonSerializer.SerializeToUtf8Bytes(node);
                return XxHash3.HashToUInt64(canonical);
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
