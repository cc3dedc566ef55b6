using System.Collections.Concurrent;
using CloudMem.Engine.Symbols;

namespace CloudMem.Tests.Support;

/// <summary>The shipped Windows kernel tables (shared/symbols/windows) the Windows tests lay images out with.</summary>
public static class WindowsSymbols
{
    public const string Win10 = "606FF669409B00F7FC8C61A9C1670129";
    public const string Win7 = "339E74133576439CBCDF7E0229DA3773";
    public const string Win11 = "0CE4A95C0CD782A7596B034D8648E585";

    /// <summary>Path of the kernel ISF (skips the test when shared/symbols is absent).</summary>
    public static string Isf(string guid) => SharedFiles.Require("symbols", "windows", "ntkrnlmp.pdb", guid + "-1.json.xz");

    /// <summary>The symbols root to pass as --symbols, and the loaded type model.</summary>
    public static (string Root, TypeModel Types) Load(string guid)
    {
        string table = Isf(guid);
        string root = Path.GetDirectoryName(Path.GetDirectoryName(Path.GetDirectoryName(table)!)!)!;
        return (root, IsfLoader.Load(table));
    }
}

/// <summary>
/// xunit class fixture: the attack scenario laid out once per build (raw file, symbols root, manifest, and the builder
/// for page-table lookups in mutation tests).
/// </summary>
public sealed class WindowsAttackImages : IDisposable
{
    private readonly TempDir _dir = new();
    private readonly ConcurrentDictionary<string, Lazy<Built>> _built = new();

    /// <summary>One built image.</summary>
    public sealed record Built(string Raw, string Root, WindowsImageManifest Manifest, WindowsImageBuilder Builder);

    public Built Get(string guid) => _built.GetOrAdd(guid, g => new Lazy<Built>(() =>
    {
        (string root, TypeModel types) = WindowsSymbols.Load(g);
        var builder = new WindowsImageBuilder(types, g, 1);
        (byte[] image, WindowsImageManifest manifest) = builder.Build(WindowsImageBuilder.AttackScenario());
        return new Built(_dir.Write($"attack-{g}.raw", image), root, manifest, builder);
    })).Value;

    public void Dispose() => _dir.Dispose();
}
