using System.Globalization;
using Microsoft.Win32.SafeHandles;

namespace Relay.Diagnostics;

/// <summary>
/// Reads the small "Key: value [kB]" files of /proc (status, meminfo) into a caller's buffer and
/// picks fields out of them, without a string per line.
/// </summary>
internal static class ProcFiles
{
    /// <summary>Reads <paramref name="path"/> into <paramref name="buffer"/>; the bytes read, 0 when it cannot be read.</summary>
    public static int Read(string path, Span<byte> buffer)
    {
        try
        {
            using SafeFileHandle handle = File.OpenHandle(path);
            var total = 0;
            int read;
            while (total < buffer.Length && (read = RandomAccess.Read(handle, buffer[total..], total)) > 0)
            {
                total += read;
            }

            return total;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return 0;
        }
    }

    /// <summary>
    /// The number after <paramref name="key"/> on the line that starts with it (a trailing "kB" is
    /// ignored: the caller knows the unit); false when no line starts with the key or its value is not a number.
    /// </summary>
    public static bool TryField(ReadOnlySpan<byte> text, ReadOnlySpan<byte> key, out long value)
    {
        value = 0;
        var at = text.IndexOf(key);
        while (at > 0 && text[at - 1] != (byte)'\n')
        {
            var next = text[(at + 1)..].IndexOf(key);
            at = next < 0 ? -1 : at + 1 + next;
        }

        if (at < 0)
        {
            return false;
        }

        var rest = text[(at + key.Length)..];
        var end = rest.IndexOf((byte)'\n');
        var field = (end < 0 ? rest : rest[..end]).Trim(" \tkB"u8);
        return long.TryParse(field, NumberStyles.None, CultureInfo.InvariantCulture, out value);
    }

    /// <summary><see cref="TryField"/>, or 0.</summary>
    public static long Field(ReadOnlySpan<byte> text, ReadOnlySpan<byte> key) => TryField(text, key, out var value) ? value : 0;
}
