using System.Net;
using System.Text.Json;
using Relay.FunctionalTests.Infrastructure;

namespace Relay.FunctionalTests.L7;

/// <summary>Config text and clients for the L7 tests.</summary>
internal static class L7Test
{
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(15);

    public const string NoProbes = """ "active": { "enabled": false } """;

    /// <summary>One HTTP route "web" on cluster "c"; <paramref name="route"/> adds route keys, <paramref name="clusters"/> more clusters.</summary>
    public static string Config(string endpoints, string route = "", string cluster = "", string health = NoProbes, string clusters = "") => $$"""
        {
          "routes": { "web": { "protocol": "http", "listen": "127.0.0.1:0", "cluster": "c" {{route}} } },
          "clusters": {
            "c": { "healthCheck": { {{health}} } {{cluster}}, "endpoints": { {{endpoints}} } }
            {{clusters}}
          }
        }
        """;

    public static string Endpoint(string id, HttpBackend backend) => $$"""  "{{id}}": { "address": "{{backend.Address}}" }""";

    public static HttpClient Client(TestRelay relay, bool cookies = false) => new(new SocketsHttpHandler
    {
        UseCookies = cookies,
        CookieContainer = new CookieContainer(),
        UseProxy = false,
        PooledConnectionLifetime = TimeSpan.FromMinutes(1),
    })
    {
        BaseAddress = new Uri($"http://127.0.0.1:{relay.Route("web").Port}"),
        Timeout = Timeout,
    };

    /// <summary>Which backend answered (its X-Backend header).</summary>
    public static async Task<string> GetBackendAsync(this HttpClient client, string path = "/", HttpRequestMessage? request = null)
    {
        using var response = await client.SendAsync(request ?? new HttpRequestMessage(HttpMethod.Get, path)).WaitAsync(Timeout);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return response.Headers.GetValues("X-Backend").Single();
    }

    public static async Task<JsonDocument> AdminJsonAsync(this TestRelay relay, string path) =>
        JsonDocument.Parse(await relay.Http.GetStringAsync(path).WaitAsync(Timeout));

    public static async Task WaitUntilAsync(Func<bool> condition, string what, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? Timeout);
        while (!condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException("timed out waiting until " + what);
            }

            await Task.Delay(20);
        }
    }

    /// <summary>The value of one metric sample in Prometheus text, or 0 when absent.</summary>
    public static double Metric(this TestRelay relay, string sample)
    {
        foreach (var line in relay.Metrics().Split('\n'))
        {
            if (line.StartsWith(sample + " ", StringComparison.Ordinal))
            {
                return double.Parse(line.AsSpan(sample.Length + 1), System.Globalization.CultureInfo.InvariantCulture);
            }
        }

        return 0;
    }
}
