using System.Security.Cryptography;
using Relay.Transport.Crypto;

namespace Relay.Transport.Tests.Support;

internal static class TestKeys
{
    public static byte[] Psk { get; } = Enumerable.Range(0, 32).Select(i => (byte)(i * 7)).ToArray();

    public static TransportKeys Fresh() => TransportKeys.Derive(Psk, RandomNumberGenerator.GetBytes(32), RandomNumberGenerator.GetBytes(32));
}
