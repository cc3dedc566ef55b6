using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;

namespace CloudMem.Engine.Yara;

/// <summary>One string of one rule found in a scanned buffer.</summary>
/// <param name="Rule">The rule's identifier.</param>
/// <param name="String">The string's identifier (e.g. <c>$a</c>).</param>
/// <param name="Offset">Where the match starts in the buffer.</param>
/// <param name="Length">Its length in bytes.</param>
public readonly record struct YaraMatch(string Rule, string String, long Offset, int Length);

/// <summary>
/// Compiled YARA rules (libyara, called through P/Invoke), from one rule file or every <c>.yar</c>/<c>.yara</c> file of a
/// directory. Not thread-safe: one scan at a time.
/// </summary>
public sealed unsafe class YaraRules : IDisposable
{
    private IntPtr _rules;

    private YaraRules(IntPtr rules) => _rules = rules;

    /// <summary>The rule files read (sorted), for notes.</summary>
    public IReadOnlyList<string> Files { get; private init; } = [];

    /// <summary>Compiles the rules of a file, or of every .yar/.yara file in a directory (sorted by name).</summary>
    /// <exception cref="YaraRuleException">A file does not compile (file:line: message), or there is no rule file.</exception>
    /// <exception cref="YaraUnavailableException">libyara is not installed.</exception>
    public static YaraRules Compile(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        string[] files = Directory.Exists(path)
            ? Directory.EnumerateFiles(path).Where(f => f.EndsWith(".yar", StringComparison.OrdinalIgnoreCase) || f.EndsWith(".yara", StringComparison.OrdinalIgnoreCase))
                .Order(StringComparer.Ordinal).ToArray()
            : File.Exists(path) ? [path] : throw new YaraRuleException($"YARA rules '{path}': no such file or directory");
        if (files.Length == 0)
        {
            throw new YaraRuleException($"YARA rules '{path}': the directory holds no .yar or .yara file");
        }
        YaraNative.Api api = YaraNative.Library;
        IntPtr compiler;
        Check(api.CompilerCreate(&compiler), "yr_compiler_create");
        var errors = new CompileErrors();
        GCHandle handle = GCHandle.Alloc(errors);
        try
        {
            api.CompilerSetCallback(compiler, &OnCompilerMessage, GCHandle.ToIntPtr(handle));
            foreach (string file in files)
            {
                errors.File = file;
                byte[] text = [.. File.ReadAllBytes(file), 0];
                fixed (byte* source = text)
                {
                    if (api.CompilerAddString(compiler, source, null) != 0 || errors.First is not null)
                    {
                        throw new YaraRuleException(errors.First ?? $"{file}: does not compile");
                    }
                }
            }
            IntPtr rules;
            Check(api.CompilerGetRules(compiler, &rules), "yr_compiler_get_rules");
            return new YaraRules(rules) { Files = files };
        }
        finally
        {
            api.CompilerDestroy(compiler);
            handle.Free();
        }
    }

    /// <summary>Every match of every string of every matching rule in <paramref name="data"/>, offsets relative to its start.</summary>
    public List<YaraMatch> Scan(ReadOnlySpan<byte> data)
    {
        ObjectDisposedException.ThrowIf(_rules == IntPtr.Zero, this);
        var found = new List<YaraMatch>();
        GCHandle handle = GCHandle.Alloc(found);
        try
        {
            fixed (byte* buffer = data)
            {
                int error = YaraNative.Library.RulesScanMem(_rules, buffer, (nuint)data.Length, 0, &OnScanMessage, GCHandle.ToIntPtr(handle), 0);
                Check(error, "yr_rules_scan_mem");
            }
        }
        finally
        {
            handle.Free();
        }
        return found;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (_rules != IntPtr.Zero)
        {
            YaraNative.Library.RulesDestroy(_rules);
            _rules = IntPtr.Zero;
        }
    }

    private static void Check(int error, string function)
    {
        if (error != 0)
        {
            throw new InvalidOperationException($"{function} failed with libyara error {error} (yara/error.h)");
        }
    }

    private sealed class CompileErrors
    {
        public string File { get; set; } = "";
        public string? First { get; set; }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void OnCompilerMessage(int level, IntPtr fileName, int line, IntPtr rule, IntPtr message, IntPtr user)
    {
        if (level != 0 || GCHandle.FromIntPtr(user).Target is not CompileErrors errors || errors.First is not null)
        {
            return; // warnings are not errors; keep the first error
        }
        string text = (Marshal.PtrToStringUTF8(message) ?? "error").ReplaceLineEndings(" ");
        errors.First = $"{errors.File}:{line}: {text}";
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int OnScanMessage(IntPtr context, int message, IntPtr data, IntPtr user)
    {
        if (message != YaraNative.MessageRuleMatching || GCHandle.FromIntPtr(user).Target is not List<YaraMatch> found)
        {
            return 0; // CALLBACK_CONTINUE
        }
        byte* rule = (byte*)data;
        string ruleName = Utf8(*(IntPtr*)(rule + YaraNative.RuleIdentifier));
        byte* matches = *(byte**)((byte*)context + YaraNative.ContextMatches);
        byte* s = *(byte**)(rule + YaraNative.RuleStrings);
        for (int i = 0; s != null && matches != null && i < YaraNative.MaxStringsPerRule; i++, s += YaraNative.StringSize)
        {
            uint index = *(uint*)(s + YaraNative.StringIndex);
            string stringName = Utf8(*(IntPtr*)(s + YaraNative.StringIdentifier));
            for (byte* m = *(byte**)(matches + (index * (ulong)YaraNative.MatchesSize)); m != null; m = *(byte**)(m + YaraNative.MatchNext))
            {
                found.Add(new YaraMatch(ruleName, stringName, *(long*)(m + YaraNative.MatchOffset), *(int*)(m + YaraNative.MatchLength)));
            }
            if ((*(uint*)(s + YaraNative.StringFlags) & YaraNative.StringLastInRule) != 0)
            {
                break;
            }
        }
        return 0;
    }

    private static string Utf8(IntPtr text) => Marshal.PtrToStringUTF8(text) ?? "";

    /// <summary>Printable ASCII of a match's first bytes, other bytes as '.'.</summary>
    public static string Preview(ReadOnlySpan<byte> bytes, int max = 48)
    {
        var sb = new StringBuilder(Math.Min(bytes.Length, max));
        foreach (byte b in bytes[..Math.Min(bytes.Length, max)])
        {
            sb.Append(b is >= 0x20 and < 0x7f ? (char)b : '.');
        }
        return sb.ToString();
    }
}
