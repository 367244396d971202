using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;

namespace Relay.Admin;

/// <summary>
/// The admin API's endpoints as plain request delegates. A minimal-API handler (a lambda with typed
/// parameters) is compiled by ASP.NET's RequestDelegateFactory with System.Linq.Expressions when the
/// admin listener serves its first request, and that stays in the process: about 10 MiB of a relay's
/// memory for twenty handlers (docs/benchmarks.md, session 15). These handlers take the
/// <see cref="HttpContext"/> and read their few route and query values themselves.
/// </summary>
internal static class AdminRoutes
{
    /// <summary>A handler's answer: an <see cref="IResult"/>, or a value of a type <see cref="AdminJsonContext"/> knows, written as JSON.</summary>
    public delegate object? Handler(HttpContext context);

    /// <summary>An asynchronous handler's answer, as <see cref="Handler"/>.</summary>
    public delegate Task<object?> AsyncHandler(HttpContext context);

    public static void Get(this IEndpointRouteBuilder app, string pattern, Handler handler) =>
        app.MapMethods(pattern, [HttpMethods.Get], ToRequestDelegate(handler));

    public static void Post(this IEndpointRouteBuilder app, string pattern, Handler handler) =>
        app.MapMethods(pattern, [HttpMethods.Post], ToRequestDelegate(handler));

    public static void Map(this IEndpointRouteBuilder app, string pattern, string[] methods, AsyncHandler handler) =>
        app.MapMethods(pattern, methods, async context => await WriteAsync(context, await handler(context).ConfigureAwait(false)).ConfigureAwait(false));

    /// <summary>A route value the pattern guarantees (a <c>{name}</c> segment).</summary>
    public static string Route(this HttpContext context, string name) =>
        Convert.ToString(context.Request.RouteValues[name], CultureInfo.InvariantCulture) ?? "";

    /// <summary>A <c>{name:long}</c> route value: the constraint has already checked that it parses.</summary>
    public static long RouteInt64(this HttpContext context, string name) =>
        long.Parse(context.Route(name), NumberStyles.Integer, CultureInfo.InvariantCulture);

    /// <summary>An optional query value, or null when the query does not have it.</summary>
    public static string? Query(this HttpContext context, string name) =>
        context.Request.Query.TryGetValue(name, out var values) && values.Count > 0 ? values[0] : null;

    /// <summary>
    /// An optional integer query value, clamped to [<paramref name="min"/>, <paramref name="max"/>];
    /// false, with a 400 answer naming the parameter, when it is there and not an integer.
    /// </summary>
    public static bool TryQueryInt32(this HttpContext context, string name, int fallback, int min, int max, out int value, out IResult? error)
    {
        error = null;
        value = fallback;
        if (context.Query(name) is not { } text)
        {
            return true;
        }

        if (!int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var parsed))
        {
            error = Error(StatusCodes.Status400BadRequest, $"{name}: expected an integer, found \"{text}\"");
            return false;
        }

        value = Math.Clamp(parsed, min, max);
        return true;
    }

    /// <summary>
    /// The request's body read as JSON into <typeparamref name="T"/>, whatever its Content-Type says
    /// (<c>curl -d</c> says form data); the default when there is no body; a 400 naming the problem when
    /// it is not JSON of that shape.
    /// </summary>
    public static async Task<(T? Value, IResult? Error)> ReadJsonAsync<T>(this HttpRequest request, JsonTypeInfo<T> type)
        where T : class
    {
        if (!(request.ContentLength > 0))
        {
            return (null, null);
        }

        try
        {
            return (await JsonSerializer.DeserializeAsync(request.Body, type, request.HttpContext.RequestAborted).ConfigureAwait(false), null);
        }
        catch (JsonException ex)
        {
            return (null, Error(StatusCodes.Status400BadRequest, $"body: not valid JSON: {ex.Message}"));
        }
    }

    /// <summary>The admin API's error answer: <c>{"error": message}</c> with <paramref name="status"/>.</summary>
    public static IResult Error(int status, string message) => Json(new ErrorView(message), status);

    /// <summary>
    /// <paramref name="value"/> written as JSON with <paramref name="status"/>, by the metadata
    /// <see cref="AdminJsonContext"/> generated for its type.
    /// </summary>
    public static IResult Json(object value, int status = StatusCodes.Status200OK) => new JsonAnswer(value, status);

    private static RequestDelegate ToRequestDelegate(Handler handler) => context => WriteAsync(context, handler(context));

    private static Task WriteAsync(HttpContext context, object? value) => value switch
    {
        IResult result => result.ExecuteAsync(context),
        null => Results.Text("null", "application/json").ExecuteAsync(context),
        _ => Json(value).ExecuteAsync(context),
    };

    private sealed class JsonAnswer(object value, int status) : IResult
    {
        public Task ExecuteAsync(HttpContext httpContext)
        {
            var response = httpContext.Response;
            response.StatusCode = status;
            response.ContentType = "application/json; charset=utf-8";
            var type = AdminJsonContext.Default.GetTypeInfo(value.GetType())
                ?? throw new InvalidOperationException($"the admin API answers with {value.GetType().Name}, which AdminJsonContext does not list");
            return JsonSerializer.SerializeAsync(response.Body, value, type, httpContext.RequestAborted);
        }
    }
}
