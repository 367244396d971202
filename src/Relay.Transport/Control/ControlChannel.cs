using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography;
using Relay.Transport.Crypto;

namespace Relay.Transport.Control;

/// <summary>
/// The authenticated TCP control connection of docs/transport.md section 8: a mutual HMAC-SHA256
/// challenge-response over the pre-shared key, key derivation for the datagram channel, then
/// length-prefixed opaque messages, each sealed with AES-256-GCM under a per-direction counter nonce
/// (so a replayed, reordered, injected or truncated message fails and ends the connection).
/// </summary>
/// <remarks>One sender and one reader may use the channel at the same time.</remarks>
public sealed class ControlChannel : IAsyncDisposable
{
    public const int MaxMessageBytes = 1024 * 1024;
    private const int TagBytes = 16;
    private const int MacBytes = 32;
    private static readonly byte[] _magic = "RLY1"u8.ToArray();

    private readonly Stream _stream;
    private readonly AesGcm _sendAead;
    private readonly AesGcm _receiveAead;
    private readonly byte[] _sendIv;
    private readonly byte[] _receiveIv;
    private readonly SemaphoreSlim _sendGate = new(1, 1);
    private ulong _sendCounter;
    private ulong _receiveCounter;
    private int _disposed;

    private ControlChannel(Stream stream, TransportKeys keys, bool isClient)
    {
        _stream = stream;
        Keys = keys;
        IsClient = isClient;
        var send = isClient ? keys.ControlClientToServer : keys.ControlServerToClient;
        var receive = isClient ? keys.ControlServerToClient : keys.ControlClientToServer;
        _sendAead = new AesGcm(send.Key, TagBytes);
        _receiveAead = new AesGcm(receive.Key, TagBytes);
        _sendIv = send.Iv;
        _receiveIv = receive.Iv;
    }

    /// <summary>Keys for the datagram channel, fresh for this connection.</summary>
    public TransportKeys Keys { get; }

    /// <summary>True on the side that opened the connection; pass it to <c>MultipathChannel.Start</c>.</summary>
    public bool IsClient { get; }

    /// <summary>Connects over TCP and runs the client side of the handshake.</summary>
    public static async Task<ControlChannel> ConnectAsync(EndPoint server, ReadOnlyMemory<byte> psk, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(server);
        var socket = new Socket(server.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await socket.ConnectAsync(server, cancellationToken).ConfigureAwait(false);
            return await HandshakeAsync(new NetworkStream(socket, ownsSocket: true), psk, isClient: true, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>Runs the server side of the handshake on an accepted TCP socket.</summary>
    public static Task<ControlChannel> AcceptAsync(Socket accepted, ReadOnlyMemory<byte> psk, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(accepted);
        accepted.NoDelay = true;
        return HandshakeAsync(new NetworkStream(accepted, ownsSocket: true), psk, isClient: false, cancellationToken);
    }

    /// <summary>
    /// Runs the handshake over any stream. Throws <see cref="AuthenticationException"/> when the peer
    /// does not prove knowledge of the key; the stream is disposed on any failure.
    /// </summary>
    public static async Task<ControlChannel> HandshakeAsync(Stream stream, ReadOnlyMemory<byte> psk, bool isClient, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(stream);
        if (psk.Length < TransportKeys.MinPskBytes)
        {
            await stream.DisposeAsync().ConfigureAwait(false);
            throw new ArgumentException($"The pre-shared key must be at least {TransportKeys.MinPskBytes} bytes.", nameof(psk));
        }

        try
        {
            byte[] clientNonce, serverNonce;
            if (isClient)
            {
                clientNonce = RandomNumberGenerator.GetBytes(TransportKeys.NonceBytes);
                await WriteFrameAsync(stream, [.. _magic, .. clientNonce], cancellationToken).ConfigureAwait(false);
                var hello = await ReadFrameAsync(stream, 4 + TransportKeys.NonceBytes + MacBytes, cancellationToken).ConfigureAwait(false);
                if (hello is null || hello.Length != 4 + TransportKeys.NonceBytes + MacBytes || !hello.AsSpan(0, 4).SequenceEqual(_magic))
                {
                    throw new AuthenticationException("The server's handshake is malformed.");
                }

                serverNonce = hello.AsSpan(4, TransportKeys.NonceBytes).ToArray();
                if (!CryptographicOperations.FixedTimeEquals(hello.AsSpan(4 + TransportKeys.NonceBytes), Mac(psk.Span, "server"u8, clientNonce, serverNonce)))
                {
                    throw new AuthenticationException("The server does not hold the pre-shared key.");
                }

                await WriteFrameAsync(stream, Mac(psk.Span, "client"u8, clientNonce, serverNonce), cancellationToken).ConfigureAwait(false);
            }
            else
            {
                var hello = await ReadFrameAsync(stream, 4 + TransportKeys.NonceBytes, cancellationToken).ConfigureAwait(false);
                if (hello is null || hello.Length != 4 + TransportKeys.NonceBytes || !hello.AsSpan(0, 4).SequenceEqual(_magic))
                {
                    throw new AuthenticationException("The client's handshake is malformed.");
                }

                clientNonce = hello.AsSpan(4).ToArray();
                serverNonce = RandomNumberGenerator.GetBytes(TransportKeys.NonceBytes);
                await WriteFrameAsync(stream, [.. _magic, .. serverNonce, .. Mac(psk.Span, "server"u8, clientNonce, serverNonce)], cancellationToken).ConfigureAwait(false);
                var proof = await ReadFrameAsync(stream, MacBytes, cancellationToken).ConfigureAwait(false);
                if (proof is null || !CryptographicOperations.FixedTimeEquals(proof, Mac(psk.Span, "client"u8, clientNonce, serverNonce)))
                {
                    throw new AuthenticationException("The client does not hold the pre-shared key.");
                }
            }

            return new ControlChannel(stream, TransportKeys.Derive(psk.Span, clientNonce, serverNonce), isClient);
        }
        catch
        {
            await stream.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Seals and sends one opaque message of at most <see cref="MaxMessageBytes"/> bytes.</summary>
    public async ValueTask SendAsync(ReadOnlyMemory<byte> message, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(message.Length, MaxMessageBytes, nameof(message));
        await _sendGate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var frame = new byte[4 + message.Length + TagBytes];
            BinaryPrimitives.WriteUInt32BigEndian(frame, (uint)(message.Length + TagBytes));
            var nonce = Nonce(_sendIv, _sendCounter++);
            _sendAead.Encrypt(nonce, message.Span, frame.AsSpan(4, message.Length), frame.AsSpan(4 + message.Length, TagBytes));
            await _stream.WriteAsync(frame, cancellationToken).ConfigureAwait(false);
            await _stream.FlushAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _sendGate.Release();
        }
    }

    /// <summary>
    /// Receives the next message, or null when the peer closed the connection cleanly. Throws
    /// <see cref="AuthenticationException"/> for a message that fails authentication (the connection is then unusable).
    /// </summary>
    public async ValueTask<byte[]?> ReceiveAsync(CancellationToken cancellationToken = default)
    {
        var frame = await ReadFrameAsync(_stream, MaxMessageBytes + TagBytes, cancellationToken).ConfigureAwait(false);
        if (frame is null)
        {
            return null;
        }

        if (frame.Length < TagBytes)
        {
            throw new AuthenticationException("A control message is shorter than its tag.");
        }

        var message = new byte[frame.Length - TagBytes];
        try
        {
            _receiveAead.Decrypt(Nonce(_receiveIv, _receiveCounter++), frame.AsSpan(0, message.Length), frame.AsSpan(message.Length), message);
        }
        catch (AuthenticationTagMismatchException ex)
        {
            throw new AuthenticationException("A control message failed authentication.", ex);
        }

        return message;
    }

    private static byte[] Mac(ReadOnlySpan<byte> psk, ReadOnlySpan<byte> role, ReadOnlySpan<byte> clientNonce, ReadOnlySpan<byte> serverNonce)
    {
        var input = new byte[role.Length + clientNonce.Length + serverNonce.Length];
        role.CopyTo(input);
        clientNonce.CopyTo(input.AsSpan(role.Length));
        serverNonce.CopyTo(input.AsSpan(role.Length + clientNonce.Length));
        return HMACSHA256.HashData(psk, input);
    }

    private static byte[] Nonce(byte[] iv, ulong counter)
    {
        var nonce = (byte[])iv.Clone();
        var low = BinaryPrimitives.ReadUInt64BigEndian(nonce.AsSpan(4)) ^ counter;
        BinaryPrimitives.WriteUInt64BigEndian(nonce.AsSpan(4), low);
        return nonce;
    }

    private static async ValueTask WriteFrameAsync(Stream stream, byte[] body, CancellationToken cancellationToken)
    {
        var frame = new byte[4 + body.Length];
        BinaryPrimitives.WriteUInt32BigEndian(frame, (uint)body.Length);
        body.CopyTo(frame, 4);
        await stream.WriteAsync(frame, cancellationToken).ConfigureAwait(false);
        await stream.FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Reads one length-prefixed frame; null on a clean end of stream before the prefix.</summary>
    private static async ValueTask<byte[]?> ReadFrameAsync(Stream stream, int maxBytes, CancellationToken cancellationToken)
    {
        var prefix = new byte[4];
        var read = await stream.ReadAtLeastAsync(prefix, 4, throwOnEndOfStream: false, cancellationToken).ConfigureAwait(false);
        if (read == 0)
        {
            return null;
        }

        if (read < 4)
        {
            throw new EndOfStreamException("The control connection ended inside a length prefix.");
        }

        var length = BinaryPrimitives.ReadUInt32BigEndian(prefix);
        if (length > (uint)maxBytes)
        {
            throw new InvalidDataException($"A control frame of {length} bytes exceeds the limit of {maxBytes}.");
        }

        var body = new byte[length];
        await stream.ReadExactlyAsync(body, cancellationToken).ConfigureAwait(false);
        return body;
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        await _stream.DisposeAsync().ConfigureAwait(false);
        _sendAead.Dispose();
        _receiveAead.Dispose();
        _sendGate.Dispose();
    }
}
