using CloudMem.Engine.Output;
using CloudMem.VmStateParsers;

namespace CloudMem.Engine.Capture;

/// <summary>One run, as reported.</summary>
public sealed record RunRow(string PhysicalStart, string PhysicalEnd, ulong Length, string Storage, string FileOffset);

/// <summary>One CPU, as reported (all registers in JSON).</summary>
public sealed record CpuRow(int Index, string Source, IReadOnlyDictionary<string, string> Registers);

/// <summary>What VMCOREINFO says that matters for analysis.</summary>
public sealed record VmcoreInfoSummary(string? OsRelease, string? BuildId, string? KernelOffset, string? PhysBase, string? PageSize, int Lines, IReadOnlyDictionary<string, string> Entries);

/// <summary>The banner, as reported.</summary>
public sealed record BannerRow(string Text, string PhysicalAddress);

/// <summary>Everything <c>cloudmem info</c> says about a capture.</summary>
public sealed record CaptureInfo(
    string File,
    long FileSize,
    string Format,
    ulong CapturedBytes,
    string MaxAddress,
    int RunCount,
    IReadOnlyList<RunRow> Runs,
    IReadOnlyDictionary<string, string> Properties,
    VmcoreInfoSummary? VmcoreInfo,
    IReadOnlyList<CpuRow> Cpus,
    BannerRow? KernelBanner,
    IReadOnlyList<string> Warnings,
    IReadOnlyList<MetadataKey>? KeyTree = null) : IReport
{
    /// <summary>Most runs listed in table output (JSON lists all).</summary>
    public const int TableRunLimit = 64;

    /// <summary>Most keys listed in table output (JSON lists all).</summary>
    public const int TableKeyLimit = 500;

    /// <summary>Longest value shown in table output.</summary>
    public const int TableValueLimit = 80;

    /// <summary>Builds the report: reads the metadata and scans memory for the kernel banner.</summary>
    public static CaptureInfo Build(string path, IPhysicalMemory memory, bool scanBanner = true, CancellationToken cancellationToken = default)
    {
        CaptureMetadata metadata = memory is ICaptureMetadata m ? m.Metadata : new CaptureMetadata("unknown");
        var runs = memory.Runs.Select(r => new RunRow(Hex.Of(r.PhysicalAddress), Hex.Of(r.End - 1), r.Length, r.Storage.ToString().ToLowerInvariant(),
            r.Storage == RunStorage.Direct ? Hex.Of(r.FileOffset) : "-")).ToList();
        var properties = new Dictionary<string, string>();
        foreach (KeyValuePair<string, string> p in metadata.Properties)
        {
            properties[p.Key] = p.Value;
        }
        VmcoreInfoSummary? vmci = null;
        if (metadata.VmcoreInfo is { } info)
        {
            var entries = new Dictionary<string, string>();
            foreach (KeyValuePair<string, string> e in info.Entries)
            {
                entries[e.Key] = e.Value;
            }
            vmci = new VmcoreInfoSummary(info.OsRelease, info["BUILD-ID"], info["KERNELOFFSET"], SignedHex(info["NUMBER(phys_base)"]), info["PAGESIZE"], info.Entries.Count, entries);
            if (properties.TryGetValue("physBase", out string? header) && PhysBaseQuirk(header, info["NUMBER(phys_base)"]) is { } corrected)
            {
                properties["physBase"] = corrected;
            }
        }
        // Registers in hex; the task's pid (NT_PRSTATUS pr_pid) in decimal, as ps shows it.
        var cpus = metadata.Cpus.Select(c => new CpuRow(c.Index, c.Source,
            c.Registers.ToDictionary(r => r.Key, r => r.Key == "pid" ? Hex.Dec(r.Value) : Hex.Of(r.Value)))).ToList();
        KernelBanner? banner = scanBanner ? BannerScanner.FindLinuxBanner(memory, cancellationToken) : null;
        var warnings = new List<string>(metadata.Warnings);
        if (memory is RunMappedMemory mapped && mapped.DecodeFailures > 0)
        {
            warnings.Add($"{mapped.DecodeFailures} pages could not be decoded; last: {mapped.LastDecodeProblem}");
        }
        // A capture read in place from object storage: its address without credentials, and the object's length.
        bool remote = memory is RunMappedMemory { RemoteStats: not null };
        return new CaptureInfo(
            remote ? ((RunMappedMemory)memory).RemoteStats!.DisplayName : Path.GetFullPath(path),
            remote ? ((RunMappedMemory)memory).RemoteStats!.ObjectLength : new FileInfo(path).Length,
            metadata.Format,
            memory.TotalBytes(),
            Hex.Of(memory.MaxAddress),
            runs.Count,
            runs,
            properties,
            vmci,
            cpus,
            banner is null ? null : new BannerRow(banner.Text, Hex.Of(banner.PhysicalAddress)),
            warnings,
            metadata.KeyTree.Count > 0 ? [.. metadata.KeyTree] : null);
    }

    /// <summary>VMCOREINFO's decimal NUMBER(phys_base) as hex with the decimal kept ("-0x23800000 (-595591168)").</summary>
    private static string? SignedHex(string? number)
        => long.TryParse(number, System.Globalization.NumberStyles.AllowLeadingSign, System.Globalization.CultureInfo.InvariantCulture, out long value)
            ? $"{Hex.Signed(value)} ({number})"
            : number;

    /// <summary>
    /// QEMU's kdump writer (dump-guest-memory -z/-l/-s, 7.2) reads VMCOREINFO's decimal NUMBER(phys_base) as hex, so the
    /// header's phys_base holds the decimal digits as hex digits (-595591168 becomes -0x595591168). When the header is
    /// exactly that, show VMCOREINFO's value and say why; otherwise null (the header is shown as it is).
    /// </summary>
    private static string? PhysBaseQuirk(string header, string? vmcoreinfo)
    {
        if (vmcoreinfo is null || !long.TryParse(vmcoreinfo, System.Globalization.NumberStyles.AllowLeadingSign, System.Globalization.CultureInfo.InvariantCulture, out long value))
        {
            return null;
        }
        string digitsAsHex = (value < 0 ? "-0x" : "0x") + vmcoreinfo.TrimStart('-');
        string? correct = SignedHex(vmcoreinfo);
        return string.Equals(header, digitsAsHex, StringComparison.OrdinalIgnoreCase) && !string.Equals(header, correct?.Split(' ')[0], StringComparison.OrdinalIgnoreCase)
            ? $"{correct?.Split(' ')[0]} (VMCOREINFO; the header's field holds {header}: the decimal digits read as hex by the dumping tool)"
            : null;
    }

    /// <inheritdoc />
    public IEnumerable<TableSection> ToTables()
    {
        var summary = new List<IReadOnlyList<string>>
        {
            new[] { "file", File },
            new[] { "file size", $"{Hex.Dec(FileSize)} ({Hex.Size((ulong)FileSize)})" },
            new[] { "format", Format },
            new[] { "captured", $"{Hex.Dec(CapturedBytes)} bytes ({Hex.Size(CapturedBytes)}) in {RunCount} runs" },
            new[] { "max address", MaxAddress },
            new[] { "kernel banner", KernelBanner is null ? "(not found)" : $"{KernelBanner.Text}  @ {KernelBanner.PhysicalAddress}" },
        };
        yield return new TableSection("Capture", ["", ""], summary);
        if (Properties.Count > 0)
        {
            yield return new TableSection("Format metadata", ["", ""], Properties.Select(p => (IReadOnlyList<string>)new[] { p.Key, p.Value }).ToList());
        }
        var runRows = Runs.Take(TableRunLimit).Select(r => (IReadOnlyList<string>)new[] { r.PhysicalStart, r.PhysicalEnd, Hex.Size(r.Length), r.Storage, r.FileOffset }).ToList();
        if (Runs.Count > TableRunLimit)
        {
            runRows.Add(new[] { $"... {Runs.Count - TableRunLimit} more (use --output json)", "", "", "", "" });
        }
        yield return new TableSection("Physical runs", ["start", "end", "size", "storage", "file offset"], runRows);
        if (VmcoreInfo is { } v)
        {
            yield return new TableSection("VMCOREINFO", ["", ""],
            [
                new[] { "OSRELEASE", v.OsRelease ?? "-" },
                new[] { "BUILD-ID", v.BuildId ?? "-" },
                new[] { "KERNELOFFSET", v.KernelOffset ?? "-" },
                new[] { "NUMBER(phys_base)", v.PhysBase ?? "-" },
                new[] { "PAGESIZE", v.PageSize ?? "-" },
                new[] { "lines", v.Lines.ToString(System.Globalization.CultureInfo.InvariantCulture) },
            ]);
        }
        if (Cpus.Count > 0)
        {
            string[] keys = ["rip", "rsp", "cr3", "eip", "pc", "pid"];
            yield return new TableSection("CPU state", ["cpu", "source", "registers"],
                Cpus.Select(c => (IReadOnlyList<string>)new[]
                {
                    c.Index.ToString(System.Globalization.CultureInfo.InvariantCulture),
                    c.Source,
                    string.Join(' ', keys.Where(c.Registers.ContainsKey).Select(k => $"{k}={c.Registers[k]}")),
                }).ToList());
        }
        if (KeyTree is { Count: > 0 })
        {
            var keyRows = KeyTree.Take(TableKeyLimit).Select(k => (IReadOnlyList<string>)new[] { k.Path, k.Type, Shorten(k.Value) }).ToList();
            if (KeyTree.Count > TableKeyLimit)
            {
                keyRows.Add(new[] { $"... {KeyTree.Count - TableKeyLimit} more (use --output json)", "", "" });
            }
            yield return new TableSection("Key tree", ["path", "type", "value"], keyRows);
        }
        if (Warnings.Count > 0)
        {
            yield return new TableSection("Warnings", [""], Warnings.Select(w => (IReadOnlyList<string>)new[] { w }).ToList());
        }
    }

    /// <inheritdoc />
    public object ToJsonModel() => this;

    private static string Shorten(string value)
    {
        string line = value.ReplaceLineEndings(" ");
        return line.Length <= TableValueLimit ? line : string.Concat(line.AsSpan(0, TableValueLimit - 3), "...");
    }
}
