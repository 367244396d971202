using System.Buffers;
using Microsoft.Extensions.Primitives;
using Relay.Configuration;

namespace Relay.L7.Mirroring;

/// <summary>
/// One request copy and the primary's response, shared by every shadow of the route. The pooled
/// request body and the primary's captured body go back to their pools when the last shadow is done.
/// </summary>
internal sealed class MirrorItem
{
    private readonly object _digestLock = new();
    private readonly byte[]? _body;
    private readonly BodyCapture? _primaryBody;
    private ResponseDigest? _primaryDigest;
    private int _references = 1;

    public MirrorItem(
        string method,
        string pathAndQuery,
        KeyValuePair<string, StringValues>[] headers,
        byte[]? body,
        int bodyLength,
        int primaryStatus,
        ulong primaryHeaders,
        string? primaryContentType,
        BodyCapture? primaryBody)
    {
        Method = method;
        PathAndQuery = pathAndQuery;
        Headers = headers;
        _body = body;
        BodyLength = bodyLength;
        PrimaryStatus = primaryStatus;
        PrimaryHeaders = primaryHeaders;
        PrimaryContentType = primaryContentType;
        _primaryBody = primaryBody;
    }

    public string Method { get; }

    public string PathAndQuery { get; }

    public KeyValuePair<string, StringValues>[] Headers { get; }

    public ReadOnlyMemory<byte> Body => _body is null ? ReadOnlyMemory<byte>.Empty : _body.AsMemory(0, BodyLength);

    public bool HasBody => _body is not null;

    public int BodyLength { get; }

    public int PrimaryStatus { get; }

    /// <summary>The digest of the primary's headers, taken as they arrived (the route's ignore list applied).</summary>
    public ulong PrimaryHeaders { get; }

    public string? PrimaryContentType { get; }

    public void AddReference() => Interlocked.Increment(ref _references);

    /// <summary>The primary's digest under <paramref name="compare"/>; computed once, by the first shadow that asks.</summary>
    public ResponseDigest PrimaryDigest(CompareConfig compare)
    {
        lock (_digestLock)
        {
            if (_primaryDigest is { } digest)
            {
                return digest;
            }

            var body = _primaryBody?.Digest(PrimaryContentType, compare.IgnoreJsonFields) ?? 0;
            _primaryDigest = new ResponseDigest(PrimaryStatus, PrimaryHeaders, body);
            return _primaryDigest.Value;
        }
    }

    public void Release()
    {
        if (Interlocked.Decrement(ref _references) != 0)
        {
            return;
        }

        if (_body is not null)
        {
            ArrayPool<byte>.Shared.Return(_body);
        }

        lock (_digestLock)
        {
            _primaryBody?.Dispose();
        }
    }
}
