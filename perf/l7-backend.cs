#:sdk Microsoft.NET.Sdk.Web
#:property PublishAot=false

// A tiny Kestrel HTTP backend for perf/l7-compare.sh: answers every request with the same small
// static body (no middleware, no logging), so that direct, HAProxy and Relay runs differ only in
// the proxy. Usage: dotnet run -c Release perf/l7-backend.cs -- PORT [NAME]
using System.Net;
using System.Text;

var port = args.Length > 0 ? int.Parse(args[0], System.Globalization.CultureInfo.InvariantCulture) : 8080;
var body = Encoding.ASCII.GetBytes("hello from the l7 perf backend\n");
var builder = WebApplication.CreateSlimBuilder();
builder.Logging.ClearProviders();
builder.WebHost.ConfigureKestrel(k =>
{
    k.AddServerHeader = false;
    k.Listen(IPAddress.Loopback, port);
});
var app = builder.Build();
app.Run(context =>
{
    context.Response.ContentType = "text/plain";
    context.Response.ContentLength = body.Length;
    return context.Response.Body.WriteAsync(body).AsTask();
});
Console.WriteLine($"l7-backend listening on 127.0.0.1:{port}");
await app.RunAsync();
