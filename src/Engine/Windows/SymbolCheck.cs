using CloudMem.Engine.Output;
using CloudMem.Engine.Symbols;
using CloudMem.VmStateParsers;

namespace CloudMem.Engine.Windows;

/// <summary>How a kernel candidate's symbol table was resolved.</summary>
public enum SymbolCheckStatus
{
    /// <summary>A table was found and loaded.</summary>
    Matched,
    /// <summary>No table for the GUID and age in any directory.</summary>
    Missing,
    /// <summary>A table was found but could not be loaded.</summary>
    Unreadable,
}

/// <summary>One kernel candidate and its symbol table.</summary>
public sealed record SymbolCheckRow(
    ulong PhysicalAddress, string PdbName, string Guid, uint Age, uint SizeOfImage, SymbolCheckStatus Status,
    string? Path, int? Types, int? Symbols, string? Problem, IReadOnlyList<string> Tried)
{
    /// <summary>The one-line result: "matched: PATH (N types, M symbols)" or "missing: ... looked in: ...".</summary>
    public string Result => Status switch
    {
        SymbolCheckStatus.Matched => $"matched: {Path} ({Types} types, {Symbols} symbols)",
        SymbolCheckStatus.Unreadable => $"unreadable: {Path}: {Problem}",
        _ => $"missing: no table for {PdbName} {Guid}-{Age}; looked in: {string.Join(", ", Tried)}",
    };
}

/// <summary>The result of <see cref="SymbolCheck.Run"/>.</summary>
public sealed record SymbolCheckReport(
    string Image, IReadOnlyList<string> Directories, IReadOnlyList<SymbolCheckRow> Kernels,
    IReadOnlyList<PeImageCandidate> OtherImages, long PagesScanned, bool Truncated) : IReport
{
    /// <summary>True when at least one kernel candidate has a loadable table.</summary>
    public bool AnyMatched => Kernels.Any(k => k.Status == SymbolCheckStatus.Matched);

    /// <summary>One line saying why no table matched (for the error line), or null when one did.</summary>
    public string? FailureSummary => AnyMatched
        ? null
        : Kernels.Count == 0
            ? $"no Windows x64 kernel image (ntkrnlmp/ntoskrnl/ntkrnlpa/ntkrpamp.pdb) found in {Image} ({OtherImages.Count} other PE images with a CodeView record)"
            : string.Join(" | ", Kernels.Select(k => $"0x{k.PhysicalAddress:X}: {k.Result}"));

    /// <inheritdoc/>
    public IEnumerable<TableSection> ToTables()
    {
        yield return new TableSection(
            "Kernel candidates",
            ["Address", "PDB", "GUID", "Age", "Result"],
            Kernels.Select(k => (IReadOnlyList<string>)[$"0x{k.PhysicalAddress:X}", k.PdbName, k.Guid, k.Age.ToString(), k.Result]).ToList());
        yield return new TableSection(
            "Other PE images with a CodeView record" + (Truncated ? " (truncated)" : ""),
            ["Address", "PDB", "GUID", "Age", "SizeOfImage"],
            OtherImages.Select(i => (IReadOnlyList<string>)[$"0x{i.PhysicalAddress:X}", i.PdbName, i.Guid, i.Age.ToString(), $"0x{i.SizeOfImage:X}"]).ToList());
    }

    /// <inheritdoc/>
    public object ToJsonModel() => new
    {
        Image,
        Directories,
        Matched = AnyMatched,
        Kernels = Kernels.Select(k => new
        {
            k.PhysicalAddress,
            k.PdbName,
            k.Guid,
            k.Age,
            k.SizeOfImage,
            k.Status,
            k.Path,
            k.Types,
            k.Symbols,
            k.Problem,
            k.Tried,
            k.Result,
        }).ToList(),
        OtherImages,
        PagesScanned,
        Truncated,
    };
}

/// <summary>Finds the Windows kernel candidates of a capture and the symbol table of each in a <see cref="SymbolStore"/>.</summary>
public static class SymbolCheck
{
    /// <summary>Scans <paramref name="memory"/> and resolves every kernel candidate's table (each file loaded once).</summary>
    public static SymbolCheckReport Run(IPhysicalMemory memory, string image, SymbolStore store, CancellationToken cancellationToken = default)
    {
        KernelImageScan scan = KernelImageScanner.Scan(memory, cancellationToken: cancellationToken);
        var loaded = new Dictionary<string, (TypeModel? Model, string? Problem)>(StringComparer.Ordinal);
        var rows = new List<SymbolCheckRow>();
        foreach (PeImageCandidate kernel in scan.Kernels)
        {
            SymbolLookup lookup = store.FindWindows(kernel.PdbName, kernel.Guid, kernel.Age, cancellationToken);
            if (!lookup.Found)
            {
                rows.Add(new SymbolCheckRow(kernel.PhysicalAddress, kernel.PdbName, kernel.Guid, kernel.Age, kernel.SizeOfImage,
                    SymbolCheckStatus.Missing, null, null, null, null, lookup.Tried));
                continue;
            }
            if (!loaded.TryGetValue(lookup.Path!, out (TypeModel? Model, string? Problem) table))
            {
                try
                {
                    table = (SymbolStore.Load(lookup.Path!), null);
                }
                catch (Exception e) when (e is SymbolFormatException or IOException or UnauthorizedAccessException)
                {
                    table = (null, e.Message.ReplaceLineEndings(" "));
                }
                loaded[lookup.Path!] = table;
            }
            rows.Add(table.Model is { } model
                ? new SymbolCheckRow(kernel.PhysicalAddress, kernel.PdbName, kernel.Guid, kernel.Age, kernel.SizeOfImage,
                    SymbolCheckStatus.Matched, lookup.Path, model.TypeCount, model.Symbols.Count, null, lookup.Tried)
                : new SymbolCheckRow(kernel.PhysicalAddress, kernel.PdbName, kernel.Guid, kernel.Age, kernel.SizeOfImage,
                    SymbolCheckStatus.Unreadable, lookup.Path, null, null, table.Problem, lookup.Tried));
        }
        return new SymbolCheckReport(image, store.Directories, rows, scan.Images.Where(i => !i.IsKernel).ToList(), scan.PagesScanned, scan.Truncated);
    }
}
