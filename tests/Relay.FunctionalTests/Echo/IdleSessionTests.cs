namespace Relay.FunctionalTests.Echo;

/// <summary>A session that says nothing for a while still has a Ready shadow, and still survives its primary.</summary>
[Collection(EchoTests.Name)]
public sealed class IdleSessionTests
{
    [Fact]
    public async Task AnIdleSessionKeepsAReadyShadowAndStillMoves()
    {
        var backends = await BackendProcess.StartSampleServersAsync(2);
        await using var bed = await EchoTestbed.StartAsync(backends, """{ "codec": "lines", "shadows": 1, "interval": "2ms", "ackTimeout": "1s" }""");
        var client = new ScriptedClient(11, 12);
        using var socket = await bed.Relay.ConnectAsync("svc");
        await client.RunAsync(socket, 0, 6);
        await bed.WaitUntilAsync(() => bed.AllShadowsReady(1), "the shadow is Ready");
        var session = Assert.Single(bed.Relay.App.Echo.Sessions);

        // Silent for several ack timeouts: nothing to ack is not a lost shadow.
        var quietUntil = DateTime.UtcNow.AddSeconds(3.5);
        while (DateTime.UtcNow < quietUntil)
        {
            Assert.All(session.Echo.Shadows, s => Assert.Equal(global::Relay.Echo.ShadowState.Ready, s.State));
            await Task.Delay(100);
        }

        backends[session.Endpoint.Id[0] - 'a'].Kill();
        await client.RunAsync(socket, 6, 12);
        var expected = await client.ReferenceAsync(backends.First(b => !b.HasExited).EndPoint);
        Assert.True(expected.AsSpan().SequenceEqual(client.Received), "the idle session's bytes differ from a run without the failure");
    }
}
