using System.Runtime.InteropServices;

namespace Relay.Benchmarks.Transport;

/// <summary>
/// Intel ISA-L erasure-code entry points from Debian's libisal2 (apt-get install -y libisal2), used only
/// as the peer in <see cref="ReedSolomonBenchmarks"/>.
/// </summary>
internal static unsafe partial class IsaL
{
    private const string Library = "libisal.so.2";

    public static bool IsAvailable()
    {
        try
        {
            return NativeLibrary.TryLoad(Library, out _);
        }
        catch (DllNotFoundException)
        {
            return false;
        }
    }

    [LibraryImport(Library, EntryPoint = "gf_gen_cauchy1_matrix")]
    public static partial void GfGenCauchy1Matrix(byte* matrix, int rows, int k);

    [LibraryImport(Library, EntryPoint = "ec_init_tables")]
    public static partial void EcInitTables(int k, int rows, byte* matrix, byte* gfTables);

    [LibraryImport(Library, EntryPoint = "ec_encode_data")]
    public static partial void EcEncodeData(int length, int k, int rows, byte* gfTables, byte** data, byte** coding);

    [LibraryImport(Library, EntryPoint = "gf_invert_matrix")]
    public static partial int GfInvertMatrix(byte* input, byte* output, int n);
}
