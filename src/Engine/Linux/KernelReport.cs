using CloudMem.Engine.Output;

namespace CloudMem.Engine.Linux;

/// <summary>What kernel discovery found, as printed by <c>cloudmem linux.kernel</c>.</summary>
public sealed record KernelReport(
    string Banner,
    string BannerPhysicalAddress,
    string VirtualSlide,
    string PhysBase,
    string DirectoryTableBase,
    string PagingMode,
    string PageOffsetBase,
    int Symbols,
    string SymbolSource,
    IReadOnlyList<string> Steps) : IReport
{
    /// <summary>Builds the report.</summary>
    public static KernelReport From(LinuxKernel kernel) => new(
        kernel.Banner.Text,
        Hex.Of(kernel.Banner.PhysicalAddress),
        Hex.Of(kernel.VirtualSlide),
        kernel.PhysBase < 0 ? "-" + Hex.Of((ulong)-kernel.PhysBase) : Hex.Of((ulong)kernel.PhysBase),
        Hex.Of(kernel.DirectoryTableBase),
        kernel.Kernel.Mode.Name,
        Hex.Of(kernel.PageOffsetBase),
        kernel.Symbols.Count,
        kernel.Symbols.Source,
        kernel.Steps);

    /// <inheritdoc />
    public IEnumerable<TableSection> ToTables()
    {
        yield return new TableSection("Linux kernel (found from the image alone)", ["", ""],
        [
            new[] { "banner", Banner },
            new[] { "banner physical", BannerPhysicalAddress },
            new[] { "KASLR virtual slide", VirtualSlide },
            new[] { "phys_base", PhysBase },
            new[] { "kernel DTB (init_top_pgt)", DirectoryTableBase },
            new[] { "paging", PagingMode },
            new[] { "page_offset_base", PageOffsetBase },
            new[] { "symbols", $"{Hex.Dec((ulong)Symbols)} from {SymbolSource}" },
        ]);
        yield return new TableSection("How", [""], Steps.Select(s => (IReadOnlyList<string>)new[] { s }).ToList());
    }

    /// <inheritdoc />
    public object ToJsonModel() => this;
}
