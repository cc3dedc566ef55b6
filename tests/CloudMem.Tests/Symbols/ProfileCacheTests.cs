using CloudMem.Engine.Capture;
using CloudMem.Engine.Core;
using CloudMem.Engine.Linux;
using CloudMem.Engine.Output;
using CloudMem.Engine.Symbols;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;

namespace CloudMem.Tests.Symbols;

/// <summary>The profile cache: a hit gives the rows of a miss; a damaged entry is rebuilt; --no-cache writes nothing.</summary>
public sealed class ProfileCacheTests(WindowsAttackImages images) : IClassFixture<WindowsAttackImages>, IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private static string Rows(IPhysicalMemory memory, string plugin, SymbolOptions symbols)
    {
        IReport report = PluginRegistry.Get(plugin).Run(new PluginContext(memory, "test", symbols), new PluginArguments(), default);
        var text = new StringWriter();
        ReportWriter.Write(report, OutputFormat.Json, text, TextWriter.Null);
        return text.ToString();
    }

    private static string Entry(ProfileCache cache, string kind) => Assert.Single(cache.List(), e => e.Kind == kind).Path;

    [SkippableFact]
    public void Linux_warm_cache_gives_the_rows_of_a_cold_run_and_of_no_cache()
    {
        using RunMappedMemory memory = CaptureOpener.Open(Fixture.Require("memory.raw"));
        var cache = new ProfileCache(_dir.File("profiles"));
        string[] plugins = ["linux.pslist", "linux.sockstat", "linux.lsmod"];
        var uncached = plugins.Select(p => Rows(memory, p, SymbolOptions.None)).ToList();
        Assert.Empty(cache.List());

        var cold = plugins.Select(p => Rows(memory, p, new SymbolOptions([], Cache: cache))).ToList();
        ProfileCacheEntry entry = Assert.Single(cache.List(), e => e.Kind == "linux");
        Assert.True(entry.Valid);
        Assert.StartsWith("Linux version ", entry.Description, StringComparison.Ordinal);
        DateTime written = File.GetLastWriteTimeUtc(entry.Path);

        LinuxContext warm = LinuxContext.Open(memory, new LinuxOptions(Cache: cache));
        Assert.Contains(warm.Kernel.Steps, s => s.Contains("from the profile cache", StringComparison.Ordinal));
        Assert.IsType<Kallsyms>(warm.Kernel.Symbols);
        var hit = plugins.Select(p => Rows(memory, p, new SymbolOptions([], Cache: cache))).ToList();
        Assert.Equal(uncached, cold);
        Assert.Equal(uncached, hit);
        Assert.Equal(written, File.GetLastWriteTimeUtc(entry.Path));   // a hit rewrites nothing
    }

    [SkippableFact]
    public void A_warm_command_finds_the_kernel_where_the_last_one_did_and_a_wrong_hint_changes_nothing()
    {
        using RunMappedMemory memory = CaptureOpener.Open(Fixture.Require("memory.raw"));
        var cache = new ProfileCache(_dir.File("profiles-hints"));
        LinuxContext cold = LinuxContext.Open(memory, new LinuxOptions(Cache: cache));
        var hints = new LinuxBannerHints(cache);
        Assert.Equal((cold.Kernel.Banner.PhysicalAddress, cold.Kernel.Banner.Text), Assert.Single(hints.Read()));

        LinuxContext warm = LinuxContext.Open(memory, new LinuxOptions(Cache: cache));
        Assert.Contains(warm.Kernel.Steps, s => s.Contains("profile-cache hint; no scan", StringComparison.Ordinal));
        Assert.Equal(cold.Kernel.DirectoryTableBase, warm.Kernel.DirectoryTableBase);
        Assert.Equal(cold.Kernel.PhysBase, warm.Kernel.PhysBase);
        string expected = Rows(memory, "linux.pslist", SymbolOptions.None);
        Assert.Equal(expected, Rows(memory, "linux.pslist", new SymbolOptions([], Cache: cache)));

        // Hints that do not hold this kernel: every other copy of the banner text in memory (printk's copy, /proc/version
        // output: the text is right but the page tables do not map linux_banner there), a place 2 MiB off, an address
        // past the capture.
        KernelBanner real = cold.Kernel.Banner;
        List<ulong> copies = Occurrences(memory, System.Text.Encoding.ASCII.GetBytes(real.Text)).Where(a => a != real.PhysicalAddress).ToList();
        Assert.NotEmpty(copies);
        var decoys = new List<KernelBanner> { new(real.Text, memory.MaxAddress + 0x1000), new(real.Text, real.PhysicalAddress + 0x200000) };
        decoys.AddRange(copies.Select(a => new KernelBanner(real.Text, a)));
        var wrong = new ProfileCache(_dir.File("profiles-wrong"));
        LinuxContext.Open(memory, new LinuxOptions(Cache: wrong));   // fills the kallsyms entry
        var wrongHints = new LinuxBannerHints(wrong);
        foreach (KernelBanner decoy in decoys)
        {
            wrongHints.Remember(decoy, wrongHints.Read());
        }
        Assert.Equal(decoys.Count + 1, wrongHints.Read().Count);
        LinuxContext rescanned = LinuxContext.Open(memory, new LinuxOptions(Cache: wrong));
        Assert.Equal(real.PhysicalAddress, rescanned.Kernel.Banner.PhysicalAddress);
        Assert.Equal(cold.Kernel.DirectoryTableBase, rescanned.Kernel.DirectoryTableBase);
        Assert.Equal(expected, Rows(memory, "linux.pslist", new SymbolOptions([], Cache: wrong)));
        Assert.Equal(real.PhysicalAddress, wrongHints.Read()[0].Address);   // the real place goes first again
    }

    private static IEnumerable<ulong> Occurrences(IPhysicalMemory memory, byte[] needle)
    {
        const int Chunk = 16 << 20;
        byte[] buffer = new byte[Chunk + needle.Length];
        for (ulong at = 0; at < memory.MaxAddress; at += Chunk)
        {
            int read = memory.Read(at, buffer);
            for (int from = 0; from < Math.Min(read, Chunk);)
            {
                int hit = buffer.AsSpan(from, read - from).IndexOf(needle);
                if (hit < 0 || from + hit >= Chunk)
                {
                    break;
                }
                yield return at + (ulong)(from + hit);
                from += hit + 1;
            }
        }
    }

    public static TheoryData<string> Damages() => ["flip-payload", "flip-header", "truncate", "empty", "version"];

    [SkippableTheory]
    [MemberData(nameof(Damages))]
    public void A_damaged_linux_entry_is_rebuilt_and_gives_the_same_rows(string damage)
    {
        using RunMappedMemory memory = CaptureOpener.Open(Fixture.Require("memory.raw"));
        var cache = new ProfileCache(_dir.File("profiles-" + damage));
        var symbols = new SymbolOptions([], Cache: cache);
        string expected = Rows(memory, "linux.pslist", symbols);
        string path = Entry(cache, "linux");
        Damage(path, damage);
        Assert.False(Assert.Single(cache.List(), e => e.Kind == "linux").Valid);

        LinuxContext rebuilt = LinuxContext.Open(memory, new LinuxOptions(Cache: cache));
        Assert.DoesNotContain(rebuilt.Kernel.Steps, s => s.Contains("profile cache", StringComparison.Ordinal));
        Assert.Equal(expected, Rows(memory, "linux.pslist", symbols));
        Assert.True(Assert.Single(cache.List(), e => e.Kind == "linux").Valid);   // rewritten
        LinuxContext warm = LinuxContext.Open(memory, new LinuxOptions(Cache: cache));
        Assert.Contains(warm.Kernel.Steps, s => s.Contains("from the profile cache", StringComparison.Ordinal));
    }

    private static void Damage(string path, string damage)
    {
        byte[] bytes = File.ReadAllBytes(path);
        switch (damage)
        {
            case "flip-payload":
                bytes[bytes.Length / 2] ^= 0x5A;
                bytes[bytes.Length - 1] ^= 0x01;
                break;
            case "flip-header":
                bytes[30] ^= 0xFF;   // inside the checksum
                break;
            case "truncate":
                bytes = bytes[..(bytes.Length * 2 / 3)];
                break;
            case "empty":
                bytes = [];
                break;
            case "version":
                bytes[8]++;
                break;
        }
        File.WriteAllBytes(path, bytes);
    }

    [SkippableFact]
    public void Windows_warm_cache_gives_the_rows_of_a_cold_run_and_a_damaged_entry_is_rebuilt()
    {
        WindowsAttackImages.Built image = images.Get(WindowsSymbols.Win10);
        using RunMappedMemory memory = CaptureOpener.Open(image.Raw);
        var cache = new ProfileCache(_dir.File("windows"));
        string[] plugins = ["windows.pslist", "windows.modules", "windows.handles"];
        var uncached = plugins.Select(p => Rows(memory, p, new SymbolOptions([image.Root]))).ToList();
        var cold = plugins.Select(p => Rows(memory, p, new SymbolOptions([image.Root], Cache: cache))).ToList();
        // The symbol file's type model, and this capture's discovery record (kernel base, DTB, PDB GUID/age).
        Assert.Equal(["discovery", "types"], cache.List().Select(e => e.Kind).Order());
        ProfileCacheEntry entry = Assert.Single(cache.List(), e => e.Kind == "types");
        Assert.Contains(WindowsSymbols.Win10, entry.Description, StringComparison.Ordinal);
        var warm = plugins.Select(p => Rows(memory, p, new SymbolOptions([image.Root], Cache: cache))).ToList();
        Assert.Equal(uncached, cold);
        Assert.Equal(uncached, warm);

        Damage(entry.Path, "flip-payload");
        Assert.Equal(uncached[0], Rows(memory, plugins[0], new SymbolOptions([image.Root], Cache: cache)));
        Assert.True(Assert.Single(cache.List(), e => e.Kind == "types").Valid);
    }

    [SkippableFact]
    public void A_cached_isf_model_answers_every_lookup_as_the_parsed_one()
    {
        string isf = WindowsSymbols.Isf(WindowsSymbols.Win10);
        TypeModel parsed = IsfLoader.Load(isf);
        var cache = new ProfileCache(_dir.File("isf"));
        cache.GetTypes(isf, path => IsfLoader.Load(path), "ntkrnlmp");
        bool loaded = false;
        TypeModel cached = cache.GetTypes(isf, path => { loaded = true; return IsfLoader.Load(path); });
        Assert.False(loaded, "the second load parsed the ISF again");

        Assert.Equal(parsed.Source, cached.Source);
        Assert.Equal(parsed.TypeCount, cached.TypeCount);
        Assert.Equal(parsed.Types.Count, cached.Types.Count);
        Assert.Equal(parsed.Symbols.OrderBy(kv => kv.Key, StringComparer.Ordinal), cached.Symbols.OrderBy(kv => kv.Key, StringComparer.Ordinal));
        Assert.Equal(parsed.Symbols.Count, cached.Symbols.Count);
        foreach ((string name, ulong address) in parsed.Symbols)
        {
            Assert.True(cached.Symbols.TryGetValue(name, out ulong found) && found == address, $"symbol {name}");   // the binary search
        }
        Assert.False(cached.Symbols.TryGetValue("NoSuchSymbolAnywhere", out _));
        Assert.False(cached.Symbols.ContainsKey(""));
        Assert.Null(cached.FindStruct("no_such_struct_anywhere"));
        foreach (string name in parsed.Types.Select(t => t.Name).Where(n => n.Length > 0).Distinct())
        {
            Assert.Equal(Describe(parsed.FindStruct(name)), Describe(cached.FindStruct(name)));
            Assert.Equal(Describe(parsed.FindType(name)), Describe(cached.FindType(name)));
        }
        Assert.True(parsed.TryGetOffset("_EPROCESS", "Pcb.DirectoryTableBase", out int expected));
        Assert.True(cached.TryGetOffset("_EPROCESS", "Pcb.DirectoryTableBase", out int offset));
        Assert.Equal(expected, offset);
    }

    private static string? Describe(TypeInfo? type)
        => type is null ? null
            : $"{type.Id} {type} {type.Kind} {type.Size} {type.IsSigned} {type.ArrayLength} {type.Target} "
              + string.Join(";", type.Fields.Select(f => $"{f.Name}@{f.BitOffset}:{f.BitSize}:{f.Type}"))
              + string.Join(";", type.EnumValues.Select(kv => $"{kv.Key}={kv.Value}"));

    [SkippableFact]
    public void The_cli_no_cache_option_writes_nothing_and_cache_clear_empties_the_cache()
    {
        string capture = Fixture.Require("memory.raw");
        string directory = _dir.File("cli");
        var environment = new Dictionary<string, string> { ["CLOUDMEM_CACHE_DIR"] = directory };
        (int exit, _, string err) = CliRunner.Run(environment, null, "linux.pslist", capture, "--no-cache", "-o", "json");
        Assert.True(exit == 0, err);
        Assert.False(Directory.Exists(directory) && Directory.EnumerateFileSystemEntries(directory).Any());

        (exit, _, err) = CliRunner.Run(environment, null, "linux.pslist", capture, "-o", "json");
        Assert.True(exit == 0, err);
        Assert.Equal(["hints", "linux"], Directory.GetFiles(directory, "*.profile").Select(f => Path.GetFileName(f).Split('-')[0]).Order());
        (exit, string list, err) = CliRunner.Run(environment, null, "cache", "list", "-o", "json");
        Assert.True(exit == 0, err);
        Assert.Contains("Linux version", list, StringComparison.Ordinal);
        (exit, string cleared, err) = CliRunner.Run(environment, null, "cache", "clear");
        Assert.True(exit == 0, err);
        Assert.Contains("2 entries deleted", cleared, StringComparison.Ordinal);
        Assert.Empty(Directory.GetFiles(directory));
    }
}
