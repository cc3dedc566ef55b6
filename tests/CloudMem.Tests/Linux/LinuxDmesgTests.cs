using System.Globalization;
using System.Text.RegularExpressions;
using CloudMem.Engine.Linux;
using CloudMem.Engine.Paging;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;

namespace CloudMem.Tests.Linux;

/// <summary>
/// linux.dmesg from the printk ring buffer, checked against boot.log: the guest's serial console, printed by the
/// same kernel with the same timestamps (the console shows levels 0-6; debug records are only in the buffer).
/// </summary>
public sealed partial class LinuxDmesgTests
{
    public static TheoryData<string, string> Captures() => new()
    {
        { "basic", "memory.raw" },
        { "basic", "memory.kdump-snappy" },
        { "nokaslr-novmci", "memory.lime" },
    };

    [GeneratedRegex(@"^\[\s*(\d+)\.(\d{6})\] (.*)$")]
    private static partial Regex ConsoleLine();

    [SkippableTheory]
    [MemberData(nameof(Captures))]
    public void Dmesg_starts_with_the_banner_and_holds_every_console_line_in_order_with_its_timestamp(string variant, string file)
    {
        using RunMappedMemory memory = CaptureOpener.Open(Fixture.Require(file, variant));
        LinuxContext context = LinuxContext.Open(memory);
        (List<LinuxDmesgRecord> records, List<string> notes) = LinuxDmesg.Read(context);
        Assert.Empty(notes);
        // The release the guest ran (Debian moves it on; never hard-coded): "Linux version R (...".
        using (System.Text.Json.JsonDocument truth = Fixture.Truth(variant))
        {
            string release = truth.RootElement.GetProperty("kernel").GetProperty("version").GetString()!.Split(' ')[2];
            Assert.StartsWith($"Linux version {release} ", records[0].Text, StringComparison.Ordinal);
        }
        Assert.Equal(0UL, records[0].Seq);
        Assert.All(records, r => Assert.Null(r.Doubt));
        Assert.Equal(Enumerable.Range(0, records.Count).Select(i => (ulong)i), records.Select(r => r.Seq));

        var console = File.ReadLines(Fixture.Require("boot.log", variant)).Select(l => ConsoleLine().Match(l)).Where(m => m.Success).ToList();
        int at = 0, matched = 0;
        foreach (Match line in console)
        {
            string stamp = line.Groups[1].Value + "." + line.Groups[2].Value;
            string text = line.Groups[3].Value.TrimEnd();
            int found = records.FindIndex(at, r => r.Text.TrimEnd() == text
                && r.TimestampSeconds.ToString("0.000000", CultureInfo.InvariantCulture) == stamp);
            Assert.True(found >= 0, $"console line [{stamp}] {text} not found in dmesg after record {at}");
            at = found + 1;
            matched++;
        }
        Assert.True(matched >= 300, $"only {matched} console lines compared");
        Assert.Contains(records, r => r.Level == 7 && r.Text.Contains("with arguments:", StringComparison.Ordinal));
        Assert.Contains(records, r => r.Caller == "T1");
        // dev_printk records carry their device (what /dev/kmsg prints as SUBSYSTEM= and DEVICE=).
        Assert.Contains(records, r => r.Subsystem == "acpi" && r.Device == "+acpi:PNP0A03:00" && r.Text.StartsWith("acpi PNP0A03:00: ", StringComparison.Ordinal));
        // The head descriptor (the newest record) is read too: it is the console's last kernel line.
        Assert.Equal(console[^1].Groups[3].Value.TrimEnd(), records[^1].Text.TrimEnd());
    }

    [SkippableFact]
    public void A_descriptor_left_committed_is_listed_with_a_doubt_and_hostile_sizes_give_a_note()
    {
        using RunMappedMemory memory = CaptureOpener.Open(Fixture.Require("memory.raw"));
        LinuxContext context = LinuxContext.Open(memory);
        AddressSpace k = context.Kernel.Kernel;
        Assert.True(context.Kernel.Symbols.TryGetAddress("prb", out ulong prbSymbol));
        Assert.True(k.TryReadUInt64(prbSymbol, out ulong prb));
        Assert.True(context.Types.TryGetOffset("printk_ringbuffer", "desc_ring.descs", out int descsOffset));
        Assert.True(context.Types.TryGetOffset("printk_ringbuffer", "desc_ring.count_bits", out int countBitsOffset));
        Assert.True(context.Types.TryGetSize("prb_desc", out int descSize));
        Assert.True(k.TryReadUInt64(prb + (ulong)descsOffset, out ulong descs));
        // Descriptor 5 (seq 5 on this young ring): state "committed" (1) instead of "finalized" (2).
        ulong desc5 = descs + 5UL * (ulong)descSize;
        Assert.True(k.TryReadUInt64(desc5, out ulong stateVar));
        Assert.True(k.TryTranslate(desc5, out Translation t, out _));
        Assert.True(k.TryTranslate(prb + (ulong)countBitsOffset, out Translation tc, out _));

        var overlay = new OverlayMemory(memory);
        overlay.PatchUInt64(t.PhysicalAddress, (stateVar & ((1UL << 62) - 1)) | (1UL << 62));
        LinuxContext patched = LinuxContext.Open(overlay);
        List<LinuxDmesgRecord> records = LinuxDmesg.Read(patched).Records;
        LinuxDmesgRecord five = Assert.Single(records, r => r.Seq == 5);
        Assert.Contains("not finalized", five.Doubt, StringComparison.Ordinal);
        Assert.Single(records, r => r.Doubt is not null);

        // count_bits of 60: refused with a note, no exception and no huge allocation.
        overlay.Patch(tc.PhysicalAddress, BitConverter.GetBytes(60u));
        (List<LinuxDmesgRecord> none, List<string> notes) = LinuxDmesg.Read(LinuxContext.Open(overlay));
        Assert.Empty(none);
        Assert.Contains(notes, n => n.Contains("implausible sizes", StringComparison.Ordinal));

        // tail_id far behind head_id (a smeared capture): only the last 2^count_bits ids are walked, with a note.
        Assert.True(context.Types.TryGetOffset("printk_ringbuffer", "desc_ring.tail_id", out int tailOffset));
        Assert.True(context.Types.TryGetOffset("printk_ringbuffer", "desc_ring.head_id", out int headOffset));
        Assert.True(k.TryTranslate(prb + (ulong)tailOffset, out Translation tt, out _));
        Assert.True(k.TryTranslate(prb + (ulong)headOffset, out Translation th, out _));
        var smeared = new OverlayMemory(memory);
        smeared.PatchUInt64(tt.PhysicalAddress, 0x10);
        smeared.PatchUInt64(th.PhysicalAddress, 0x10 + (1UL << 40));
        (List<LinuxDmesgRecord> few, List<string> smearNotes) = LinuxDmesg.Read(LinuxContext.Open(smeared));
        Assert.Contains(smearNotes, n => n.Contains("more than the", StringComparison.Ordinal));
        Assert.Empty(few);
        Assert.True(smearNotes.Count <= 3, string.Join("\n", smearNotes)); // one note for all skipped ids
    }

    [SkippableFact]
    public void Text_blocks_are_found_across_the_end_of_the_ring_and_foreign_or_invalid_blocks_are_doubted()
    {
        // A 64-byte ring (size_bits 6). Block layout: the writer's id (8 bytes), then the text.
        byte[] ring = new byte[64];
        BitConverter.GetBytes(7UL).CopyTo(ring, 0);
        "wrapped text"u8.CopyTo(ring.AsSpan(8));
        BitConverter.GetBytes(8UL).CopyTo(ring, 24);
        "plain block"u8.CopyTo(ring.AsSpan(32));

        // Id 7 did not fit before the end (begin at index 40 of wrap 3): placed at index 0 of wrap 4.
        string? doubt = null;
        Assert.Equal("wrapped text", LinuxDmesg.Text(ring, 6, 7, 3 * 64 + 40, 4 * 64 + 24, 12, ref doubt));
        Assert.Null(doubt);
        Assert.Equal("plain block", LinuxDmesg.Text(ring, 6, 8, 4 * 64 + 24, 4 * 64 + 48, 11, ref doubt));
        Assert.Null(doubt);
        // text_len longer than the block: cut at the block.
        Assert.Equal("plain block\0\0\0\0\0", LinuxDmesg.Text(ring, 6, 8, 4 * 64 + 24, 4 * 64 + 48, 200, ref doubt));
        // The block now belongs to another record.
        Assert.Equal("plain block", LinuxDmesg.Text(ring, 6, 9, 4 * 64 + 24, 4 * 64 + 48, 11, ref doubt));
        Assert.Contains("overwritten", doubt, StringComparison.Ordinal);
        // Positions two wraps apart, or backwards: invalid.
        doubt = null;
        Assert.Equal("", LinuxDmesg.Text(ring, 6, 7, 2 * 64 + 40, 4 * 64 + 24, 12, ref doubt));
        Assert.Contains("not a valid position pair", doubt, StringComparison.Ordinal);
        doubt = null;
        Assert.Equal("", LinuxDmesg.Text(ring, 6, 7, 4 * 64 + 48, 4 * 64 + 24, 12, ref doubt));
        Assert.NotNull(doubt);
        // Data-less records (FAILED_LPOS = 1, NO_LPOS = 3).
        doubt = null;
        Assert.Equal("", LinuxDmesg.Text(ring, 6, 7, 1, 1, 12, ref doubt));
        Assert.Equal("", LinuxDmesg.Text(ring, 6, 7, 3, 3, 12, ref doubt));
        Assert.Null(doubt);
    }
}
