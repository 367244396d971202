using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;
using System.Reflection;
using System.Runtime.CompilerServices;

namespace Relay.Hosting;

/// <summary>
/// Compiles the methods of the splice path ahead of their first call, on a background thread after
/// start. A failover is rare and cannot wait: the first one after start used to spend 20-35 ms in
/// the JIT (perf/failover-stall.sh, "first kill"), against 1-2 ms for the ones after it. Compiling
/// costs a few tens of milliseconds of one core once, and the code it makes stays resident either way
/// as soon as one splice has run. The Native AOT relay (docs/operations.md) has all its code compiled
/// already, so there this does nothing: its first failover is as quick as the later ones without it.
/// </summary>
internal static class CodeWarmup
{
    private const BindingFlags Declared = BindingFlags.DeclaredOnly | BindingFlags.Instance | BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic;

    /// <summary>Starts compiling <paramref name="types"/> (with their nested types: the async state machines) in the background.</summary>
    public static Task StartInBackground(Action<int, TimeSpan>? done, params Type[] types)
    {
        if (!RuntimeFeature.IsDynamicCodeCompiled)
        {
            return Task.CompletedTask;
        }

        return Task.Run(() =>
        {
            var started = Stopwatch.GetTimestamp();
            var count = Prepare(types);
            done?.Invoke(count, Stopwatch.GetElapsedTime(started));
        });
    }

    /// <summary>Compiles every method with a body of <paramref name="types"/> and their nested types; returns how many.</summary>
    public static int Prepare(IEnumerable<Type> types)
    {
        ArgumentNullException.ThrowIfNull(types);
        var count = 0;
        foreach (var type in types)
        {
            count += PrepareType(type);
        }

        return count;
    }

    [UnconditionalSuppressMessage("Trimming", "IL2070", Justification = "Only types the relay names itself, which the build keeps whole.")]
    [UnconditionalSuppressMessage("Trimming", "IL2075", Justification = "Nested types of those types, kept the same way.")]
    private static int PrepareType(Type type)
    {
        // Open generic types and methods have no single native body to compile.
        if (type.ContainsGenericParameters)
        {
            return 0;
        }

        var count = 0;
        foreach (var method in type.GetMethods(Declared).Cast<MethodBase>().Concat(type.GetConstructors(Declared)))
        {
            if (method.IsAbstract || method.ContainsGenericParameters ||
                (method.MethodImplementationFlags & (MethodImplAttributes.InternalCall | MethodImplAttributes.Runtime)) != 0)
            {
                continue;
            }

            try
            {
                RuntimeHelpers.PrepareMethod(method.MethodHandle);
                count++;
            }
            catch (Exception ex) when (ex is ArgumentException or InvalidOperationException or NotSupportedException or BadImageFormatException)
            {
                // A method the runtime will not compile ahead (a P/Invoke stub, say): it compiles on first call as before.
            }
        }

        foreach (var nested in type.GetNestedTypes(BindingFlags.Public | BindingFlags.NonPublic))
        {
            count += PrepareType(nested);
        }

        return count;
    }
}
