using System.Text.Json;

namespace CloudMem.Tests.Support;

/// <summary>
/// The real-memory fixtures built by tests/fixtures/make-fixture.sh (cached outside git, linked from
/// .fixtures/VARIANT). Tests that need them skip with the reason when they are absent.
/// </summary>
public static class Fixture
{
    /// <summary>Repository root (the folder holding Cloud.sln).</summary>
    public static string RepoRoot { get; } = FindRoot();

    /// <summary>The directory of a fixture variant, or null.</summary>
    public static string? Directory(string variant = "basic")
    {
        string? fromEnv = Environment.GetEnvironmentVariable("CLOUDMEM_FIXTURES");
        string dir = fromEnv is { Length: > 0 } ? Path.Combine(fromEnv, variant) : Path.Combine(RepoRoot, ".fixtures", variant);
        return File.Exists(Path.Combine(dir, "memory.raw")) ? dir : null;
    }

    /// <summary>Path of a file of the fixture, skipping the test when it is missing.</summary>
    public static string Require(string file, string variant = "basic")
    {
        string? dir = Directory(variant);
        if (dir is null && Environment.GetEnvironmentVariable("CLOUDMEM_REQUIRE_FIXTURES") == "1")
        {
            throw new InvalidOperationException($"fixture '{variant}' is required (CLOUDMEM_REQUIRE_FIXTURES=1) but missing");
        }
        Skip.If(dir is null, $"fixture '{variant}' not built: run tests/fixtures/make-fixture.sh --variant {variant} (the CI script does)");
        string path = Path.Combine(dir!, file);
        Skip.IfNot(File.Exists(path), $"fixture file {path} is missing");
        return path;
    }

    /// <summary>The guest kernel's release (uname -r) as the fixture recorded it in manifest.json.</summary>
    public static string KernelRelease(string variant = "basic")
    {
        using JsonDocument manifest = JsonDocument.Parse(File.ReadAllText(Require("manifest.json", variant)));
        return manifest.RootElement.GetProperty("kernel_release").GetString()
            ?? throw new InvalidOperationException("manifest.json has no kernel_release");
    }

    /// <summary>
    /// The Volatility ISF of the fixture's own kernel (../shared/peers/linux-RELEASE.json.xz), or null: then the test
    /// skips with <see cref="NoKernelIsf"/>.
    /// </summary>
    public static string? KernelIsf(string variant = "basic")
        => SharedFiles.Find("peers", $"linux-{KernelRelease(variant)}.json.xz");

    /// <summary>The skip reason when <see cref="KernelIsf"/> is null.</summary>
    public static string NoKernelIsf(string variant = "basic")
        => $"no ISF for the fixture's kernel {KernelRelease(variant)} in ../shared/peers (linux-{KernelRelease(variant)}.json.xz)";

    /// <summary>System RAM ranges (start, inclusive end) of the captured guest, from its /proc/iomem.</summary>
    public static IReadOnlyList<(ulong Start, ulong End)> SystemRam(string variant = "basic")
    {
        string iomem = Require("iomem.txt", variant);
        var ranges = new List<(ulong, ulong)>();
        foreach (string line in File.ReadLines(iomem))
        {
            if (line.StartsWith(' ') || !line.Contains(": System RAM", StringComparison.Ordinal))
            {
                continue;
            }
            string[] bounds = line[..line.IndexOf(' ')].Split('-');
            ranges.Add((System.Convert.ToUInt64(bounds[0], 16), System.Convert.ToUInt64(bounds[1], 16)));
        }
        return ranges;
    }

    /// <summary>truth.json of the fixture.</summary>
    public static JsonDocument Truth(string variant = "basic") => JsonDocument.Parse(File.ReadAllText(Require("truth.json", variant)));

    /// <summary>The capture files of one moment, by format (the raw file is the reference).</summary>
    public static readonly string[] CaptureFiles =
    [
        "memory.elf", "memory.lime", "memory.avml",
        "memory.kdump-zlib", "memory.kdump-lzo", "memory.kdump-snappy", "memory.kdump-zstd",
        "memory.kdump-zlib.flat", "memory.kdump-lzo.flat", "memory.kdump-snappy.flat", "memory.kdump-zstd.flat",
    ];

    private static string FindRoot()
    {
        string? dir = AppContext.BaseDirectory;
        while (dir is not null && !File.Exists(Path.Combine(dir, "Cloud.sln")))
        {
            dir = Path.GetDirectoryName(dir);
        }
        return dir ?? throw new InvalidOperationException("Cloud.sln not found above the test binaries");
    }
}
