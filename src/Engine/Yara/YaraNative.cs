using System.Runtime.InteropServices;

namespace CloudMem.Engine.Yara;

/// <summary>
/// The few libyara 4.2 entry points CloudMem calls (Debian's <c>libyara9</c>, loaded at run time from
/// <c>libyara.so.9</c>). Struct offsets are those of yara 4.2's public headers on x86-64 (yara/types.h); they were
/// checked with <c>offsetof</c> against Debian's libyara-dev 4.2.3 and the scans are compared with the <c>yara</c>
/// command-line tool in the tests.
/// </summary>
internal static unsafe class YaraNative
{
    internal const string LibraryName = "libyara.so.9";

    // yara/types.h, x86-64, yara 4.2
    internal const int RuleIdentifier = 8;       // YR_RULE.identifier
    internal const int RuleStrings = 32;         // YR_RULE.strings
    internal const int StringFlags = 0;          // YR_STRING.flags
    internal const int StringIndex = 4;          // YR_STRING.idx
    internal const int StringIdentifier = 48;    // YR_STRING.identifier
    internal const int StringSize = 56;          // sizeof(YR_STRING)
    internal const uint StringLastInRule = 0x1000; // STRING_FLAGS_LAST_IN_RULE
    internal const int ContextMatches = 160;     // YR_SCAN_CONTEXT.matches (YR_MATCHES[num_strings])
    internal const int MatchesSize = 24;         // sizeof(YR_MATCHES); head at 0
    internal const int MatchOffset = 8;          // YR_MATCH.offset
    internal const int MatchLength = 16;         // YR_MATCH.match_length
    internal const int MatchNext = 40;           // YR_MATCH.next
    internal const int MessageRuleMatching = 1;  // CALLBACK_MSG_RULE_MATCHING
    internal const int MaxStringsPerRule = 1 << 16;

    private static readonly Lazy<Api> Loaded = new(Load, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>The loaded library; throws <see cref="YaraUnavailableException"/> with what to install when it is absent.</summary>
    internal static Api Library => Loaded.Value;

    internal sealed class Api
    {
        internal delegate* unmanaged[Cdecl]<IntPtr*, int> CompilerCreate;
        internal delegate* unmanaged[Cdecl]<IntPtr, void> CompilerDestroy;
        internal delegate* unmanaged[Cdecl]<IntPtr, delegate* unmanaged[Cdecl]<int, IntPtr, int, IntPtr, IntPtr, IntPtr, void>, IntPtr, void> CompilerSetCallback;
        internal delegate* unmanaged[Cdecl]<IntPtr, byte*, byte*, int> CompilerAddString;
        internal delegate* unmanaged[Cdecl]<IntPtr, IntPtr*, int> CompilerGetRules;
        internal delegate* unmanaged[Cdecl]<IntPtr, int> RulesDestroy;
        internal delegate* unmanaged[Cdecl]<IntPtr, byte*, nuint, int, delegate* unmanaged[Cdecl]<IntPtr, int, IntPtr, IntPtr, int>, IntPtr, int, int> RulesScanMem;
    }

    private static Api Load()
    {
        if (!NativeLibrary.TryLoad(LibraryName, typeof(YaraNative).Assembly, null, out IntPtr handle))
        {
            throw new YaraUnavailableException($"{LibraryName} could not be loaded: install Debian's libyara9 (apt-get install libyara9)");
        }
        IntPtr F(string name) => NativeLibrary.TryGetExport(handle, name, out IntPtr f)
            ? f
            : throw new YaraUnavailableException($"{LibraryName} has no '{name}': libyara 4.2 (Debian's libyara9) is needed");
        var api = new Api
        {
            CompilerCreate = (delegate* unmanaged[Cdecl]<IntPtr*, int>)F("yr_compiler_create"),
            CompilerDestroy = (delegate* unmanaged[Cdecl]<IntPtr, void>)F("yr_compiler_destroy"),
            CompilerSetCallback = (delegate* unmanaged[Cdecl]<IntPtr, delegate* unmanaged[Cdecl]<int, IntPtr, int, IntPtr, IntPtr, IntPtr, void>, IntPtr, void>)F("yr_compiler_set_callback"),
            CompilerAddString = (delegate* unmanaged[Cdecl]<IntPtr, byte*, byte*, int>)F("yr_compiler_add_string"),
            CompilerGetRules = (delegate* unmanaged[Cdecl]<IntPtr, IntPtr*, int>)F("yr_compiler_get_rules"),
            RulesDestroy = (delegate* unmanaged[Cdecl]<IntPtr, int>)F("yr_rules_destroy"),
            RulesScanMem = (delegate* unmanaged[Cdecl]<IntPtr, byte*, nuint, int, delegate* unmanaged[Cdecl]<IntPtr, int, IntPtr, IntPtr, int>, IntPtr, int, int>)F("yr_rules_scan_mem"),
        };
        var initialize = (delegate* unmanaged[Cdecl]<int>)F("yr_initialize");
        int error = initialize();
        if (error != 0)
        {
            throw new YaraUnavailableException($"yr_initialize failed with libyara error {error}");
        }
        // yr_finalize is never called: the library stays initialised for the life of the process (it is reference-counted
        // and cheap to keep), so concurrent users never race on finalisation.
        return api;
    }
}

/// <summary>libyara is not installed or not the expected version.</summary>
public sealed class YaraUnavailableException(string message) : Exception(message);

/// <summary>A YARA rule file does not compile: the message names the file, the line and libyara's message.</summary>
public sealed class YaraRuleException(string message) : Exception(message);
