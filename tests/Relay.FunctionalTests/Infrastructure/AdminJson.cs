using System.Net;
using System.Text;
using System.Text.Json;

namespace Relay.FunctionalTests.Infrastructure;

/// <summary>Admin API calls that check the status code and parse the JSON answer.</summary>
public static class AdminJson
{
    /// <summary>
    /// Sends <paramref name="method"/> <paramref name="path"/> (with a JSON <paramref name="body"/> when
    /// given), asserts the answer's status is <paramref name="expected"/> (naming the call and showing
    /// the answer when not) and returns the parsed answer.
    /// </summary>
    public static async Task<JsonDocument> SendAsync(this HttpClient admin, HttpMethod method, string path, HttpStatusCode expected, string? body = null)
    {
        using var request = new HttpRequestMessage(method, path);
        if (body is not null)
        {
            request.Content = new StringContent(body, Encoding.UTF8, "application/json");
        }

        using var response = await admin.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == expected, $"{method} {path}: {(int)response.StatusCode}, expected {(int)expected}: {text}");
        return JsonDocument.Parse(text);
    }

    /// <summary>GET <paramref name="path"/>, expecting <paramref name="expected"/> (200 by default).</summary>
    public static Task<JsonDocument> GetJsonAsync(this HttpClient admin, string path, HttpStatusCode expected = HttpStatusCode.OK) =>
        admin.SendAsync(HttpMethod.Get, path, expected);
}
