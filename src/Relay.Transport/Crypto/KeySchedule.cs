using System.Security.Cryptography;
using System.Text;

namespace Relay.Transport.Crypto;

/// <summary>The keys of one connection, derived as docs/transport.md section 1 says.</summary>
public sealed class TransportKeys
{
    public const int NonceBytes = 32;
    public const int MinPskBytes = 32;
    public const int KeyBytes = 32;
    public const int IvBytes = 12;

    private TransportKeys(byte[] prk)
    {
        ClientToServer = new DirectionKeys(Expand(prk, "c2s key", KeyBytes), Expand(prk, "c2s iv", IvBytes));
        ServerToClient = new DirectionKeys(Expand(prk, "s2c key", KeyBytes), Expand(prk, "s2c iv", IvBytes));
        ControlClientToServer = new DirectionKeys(Expand(prk, "ctl c2s key", KeyBytes), Expand(prk, "ctl c2s iv", IvBytes));
        ControlServerToClient = new DirectionKeys(Expand(prk, "ctl s2c key", KeyBytes), Expand(prk, "ctl s2c iv", IvBytes));
    }

    public DirectionKeys ClientToServer { get; }

    public DirectionKeys ServerToClient { get; }

    public DirectionKeys ControlClientToServer { get; }

    public DirectionKeys ControlServerToClient { get; }

    public DirectionKeys Send(bool isClient) => isClient ? ClientToServer : ServerToClient;

    public DirectionKeys Receive(bool isClient) => isClient ? ServerToClient : ClientToServer;

    public static TransportKeys Derive(ReadOnlySpan<byte> psk, ReadOnlySpan<byte> clientNonce, ReadOnlySpan<byte> serverNonce)
    {
        if (psk.Length < MinPskBytes)
        {
            throw new ArgumentException($"The pre-shared key must be at least {MinPskBytes} bytes.", nameof(psk));
        }

        if (clientNonce.Length != NonceBytes || serverNonce.Length != NonceBytes)
        {
            throw new ArgumentException($"Handshake nonces are {NonceBytes} bytes.");
        }

        var label = "relay/transport/v1"u8;
        Span<byte> salt = stackalloc byte[label.Length + (2 * NonceBytes)];
        label.CopyTo(salt);
        clientNonce.CopyTo(salt[label.Length..]);
        serverNonce.CopyTo(salt[(label.Length + NonceBytes)..]);
        var prk = new byte[32];
        HKDF.Extract(HashAlgorithmName.SHA256, psk, salt, prk);
        try
        {
            return new TransportKeys(prk);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(prk);
        }
    }

    private static byte[] Expand(byte[] prk, string label, int length)
    {
        var output = new byte[length];
        HKDF.Expand(HashAlgorithmName.SHA256, prk, output, Encoding.ASCII.GetBytes("relay v1 " + label));
        return output;
    }
}

public sealed record DirectionKeys(byte[] Key, byte[] Iv);
