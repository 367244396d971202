using System.Collections.Immutable;
using System.Net;
using System.Text;
using BenchmarkDotNet.Attributes;
using Relay.Configuration;
using Relay.L7.Mirroring;

namespace Relay.Benchmarks.L7;

/// <summary>
/// The per-copy comparison work of L7 mirroring: digesting a response's headers (taken on the
/// primary's hot path for every mirrored request) and capturing plus digesting a small body,
/// with and without JSON noise filtering.
/// </summary>
[MemoryDiagnoser]
public class MirrorCompareBenchmarks : IDisposable
{
    private static readonly ImmutableArray<string> s_ignoreHeaders = RelayDefaults.CompareIgnoredHeaders;
    private static readonly ImmutableArray<string> s_ignoreFields = ["ts", "host"];
    private HttpResponseMessage _response = null!;
    private byte[] _json = [];

    [GlobalSetup]
    public void Setup()
    {
        _response = new HttpResponseMessage(HttpStatusCode.OK) { Content = new ByteArrayContent([]) };
        _response.Headers.TryAddWithoutValidation("Date", "Mon, 23 Nov 2026 04:00:00 GMT");
        _response.Headers.TryAddWithoutValidation("Server", "Kestrel");
        _response.Headers.TryAddWithoutValidation("Cache-Control", "no-store");
        _response.Headers.TryAddWithoutValidation("X-Request-Id", "abc123");
        _response.Content.Headers.TryAddWithoutValidation("Content-Type", "application/json; charset=utf-8");
        _response.Content.Headers.TryAddWithoutValidation("Content-Length", "120");
        _json = Encoding.UTF8.GetBytes("""{"id":42,"ts":"2026-11-23T04:00:00Z","items":[{"v":1,"host":"a"},{"v":2,"host":"b"}],"ok":true}""");

        // Check once that the filter does what the benchmark claims before measuring.
        var other = Encoding.UTF8.GetBytes("""{"id":42,"ts":"later","items":[{"v":1,"host":"x"},{"v":2,"host":"y"}],"ok":true}""");
        if (ResponseDigest.DigestBody(_json, "application/json", s_ignoreFields) != ResponseDigest.DigestBody(other, "application/json", s_ignoreFields))
        {
            throw new InvalidOperationException("JSON noise filter does not work");
        }
    }

    [GlobalCleanup]
    public void Dispose()
    {
        _response?.Dispose();
        GC.SuppressFinalize(this);
    }

    [Benchmark]
    public ulong DigestHeaders() => ResponseDigest.DigestHeaders(_response, s_ignoreHeaders);

    [Benchmark]
    public ulong CaptureAndDigestBody()
    {
        using var capture = new BodyCapture(64 * 1024);
        capture.Append(_json);
        return capture.Digest("application/json", []);
    }

    [Benchmark]
    public ulong CaptureAndDigestJsonFiltered()
    {
        using var capture = new BodyCapture(64 * 1024);
        capture.Append(_json);
        return capture.Digest("application/json", s_ignoreFields);
    }
}
