using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using CloudMem.Engine.Output;

namespace CloudMem.Engine.Linux;

/// <summary>What kernel discovery found, as printed by <c>cloudmem linux.kernel</c>.</summary>
/// <param name="Banner">The "Linux version ..." banner text.</param>
/// <param name="BannerPhysicalAddress">Where the banner is in physical memory.</param>
/// <param name="VirtualSlide">KASLR virtual slide of the kernel image.</param>
/// <param name="PhysBase">phys_base: where the kernel image was loaded against its link address (can be negative).</param>
/// <param name="DirectoryTableBase">Physical address of the kernel page tables (init_top_pgt).</param>
/// <param name="PagingMode">4- or 5-level paging.</param>
/// <param name="PageOffsetBase">Start of the direct map (page_offset_base).</param>
/// <param name="Symbols">Number of kernel symbols.</param>
/// <param name="SymbolSource">Where the symbols came from.</param>
/// <param name="Steps">How the kernel was found, step by step.</param>
public sealed record KernelReport(
    string Banner,
    [property: Hex] ulong BannerPhysicalAddress,
    [property: Hex] ulong VirtualSlide,
    [property: JsonConverter(typeof(KernelReport.SignedHexConverter))] long PhysBase,
    [property: Hex] ulong DirectoryTableBase,
    string PagingMode,
    [property: Hex] ulong PageOffsetBase,
    int Symbols,
    string SymbolSource,
    IReadOnlyList<string> Steps) : IReport
{
    /// <summary>Builds the report.</summary>
    public static KernelReport From(LinuxKernel kernel) => new(
        kernel.Banner.Text,
        kernel.Banner.PhysicalAddress,
        kernel.VirtualSlide,
        kernel.PhysBase,
        kernel.DirectoryTableBase,
        kernel.Kernel.Mode.Name,
        kernel.PageOffsetBase,
        kernel.Symbols.Count,
        kernel.Symbols.Source,
        kernel.Steps);

    /// <inheritdoc />
    public IEnumerable<TableSection> ToTables()
    {
        yield return new TableSection("Linux kernel (found from the image alone)", ["", ""],
        [
            new[] { "banner", Banner },
            new[] { "banner physical", Hex.Of(BannerPhysicalAddress) },
            new[] { "KASLR virtual slide", Hex.Of(VirtualSlide) },
            new[] { "phys_base", Hex.Signed(PhysBase) },
            new[] { "kernel DTB (init_top_pgt)", Hex.Of(DirectoryTableBase) },
            new[] { "paging", PagingMode },
            new[] { "page_offset_base", Hex.Of(PageOffsetBase) },
            new[] { "symbols", $"{Hex.Dec((ulong)Symbols)} from {SymbolSource}" },
        ]);
        yield return new TableSection("How", [""], Steps.Select(s => (IReadOnlyList<string>)new[] { s }).ToList());
    }

    /// <inheritdoc />
    public object ToJsonModel() => this;

    /// <summary>Writes a <c>long</c> as <see cref="Hex.Signed"/> and reads it back.</summary>
    internal sealed class SignedHexConverter : JsonConverter<long>
    {
        public override long Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
        {
            string text = reader.GetString() ?? throw new JsonException("expected a hex string");
            bool negative = text.StartsWith('-');
            string digits = negative ? text[1..] : text;
            return digits.StartsWith("0x", StringComparison.OrdinalIgnoreCase)
                && ulong.TryParse(digits.AsSpan(2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out ulong magnitude)
                ? negative ? -(long)magnitude : (long)magnitude
                : throw new JsonException($"'{text}' is not a 0x-prefixed hex number");
        }

        public override void Write(Utf8JsonWriter writer, long value, JsonSerializerOptions options)
            => writer.WriteStringValue(Hex.Signed(value));
    }
}
