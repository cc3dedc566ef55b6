using System.Buffers.Binary;
using CloudMem.Engine.Convert;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;
using CloudMem.VmStateParsers.Writing;

namespace CloudMem.Tests.Writers;

/// <summary>The vmsn/vmss writers: what they write reads back identically through our reader, from any of its files.</summary>
public sealed class VmwareWriterTests : IDisposable
{
    private const ulong High = 0x1_0000_0000;
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>Every captured byte of <paramref name="source"/> reads back the same from <paramref name="copy"/>.</summary>
    private static void AssertSameBytes(IPhysicalMemory source, IPhysicalMemory copy)
    {
        byte[] buffer = new byte[SequentialReader.DefaultBlockSize];
        ulong compared = 0;
        SequentialReader.ForEachBlock(source, (pa, data) =>
        {
            Span<byte> back = buffer.AsSpan(0, data.Length);
            Assert.Equal(data.Length, copy.Read(pa, back));
            Assert.True(back.SequenceEqual(data), $"bytes at 0x{pa:X} differ");
            compared += (ulong)data.Length;
            return true;
        });
        Assert.Equal(source.TotalBytes(), compared);
    }

    [SkippableTheory]
    [InlineData("vmsn", null)]
    [InlineData("vmss", null)]
    [InlineData("vmss", "inline")]
    [InlineData("vmsn", "inline")]
    public void Real_capture_round_trips_from_every_file(string target, string? variant)
    {
        string raw = Fixture.Require("memory.raw");
        using RunMappedMemory source = CaptureOpener.Open(raw);
        string output = _dir.File($"guest.{target}");
        ConvertResult result = CaptureConverter.Convert(raw, source, target, output, variant);
        Assert.True(result.Verified);
        bool inline = variant == "inline";
        Assert.Equal(inline ? [$"guest.{target}"] : new[] { $"guest.{target}", "guest.vmem" }, result.Files.Select(f => Path.GetFileName(f.Path)).ToArray());
        using (RunMappedMemory state = CaptureOpener.Open(output))
        {
            Assert.Equal("VMware checkpoint", state.Metadata.Format);
            Assert.Equal("1", state.Metadata.Get("regions"));
            Assert.Equal("PPN 0x0 (65536 pages, physical 0x0-0xFFFFFFF) at store page 0x0", state.Metadata.Get("region[0]"));
            Assert.Single(state.Runs);
            Assert.Equal(0UL, state.Runs[0].PhysicalAddress);
            Assert.Equal(0x1000_0000UL, state.Runs[0].Length);
            Assert.Equal(0L, state.Runs[0].FileOffset % 4096);   // .vmem offset 0, or inline data page-aligned by its padding
            AssertSameBytes(source, state);
        }
        if (!inline)
        {
            Assert.Equal(0x1000_0000L, new FileInfo(_dir.File("guest.vmem")).Length);
            using RunMappedMemory vmem = CaptureOpener.Open(_dir.File("guest.vmem"));
            Assert.Equal($"guest.{target}", vmem.Metadata.Get("state file"));
            Assert.Equal([new PhysicalRun(0, 0x1000_0000, 0)], vmem.Runs);
            AssertSameBytes(source, vmem);
        }
    }

    [SkippableTheory]
    [InlineData("vmsn", null)]
    [InlineData("vmss", "inline")]
    public void A_layout_above_4_GiB_round_trips_its_region_map(string target, string? variant)
    {
        // RAM below a (small, made-up) hole and relocated above 4 GiB, a sub-page run, and a sparse gap inside.
        string lime = _dir.Write("split.lime", CaptureBuilder.Lime((0, 0x20000), (0x30000, 0x1800), (High, 0x30000), (High + 0x40000, 0x10000)));
        using RunMappedMemory source = CaptureOpener.Open(lime);
        string output = _dir.File($"split.{target}");
        CaptureConverter.Convert(lime, source, target, output, variant);
        using RunMappedMemory back = CaptureOpener.Open(output);
        Assert.Equal("4", back.Metadata.Get("regions"));
        Assert.Equal("PPN 0x100000 (48 pages, physical 0x100000000-0x10002FFFF) at store page 0x22", back.Metadata.Get("region[2]"));
        Assert.Equal("PPN 0x100040 (16 pages, physical 0x100040000-0x10004FFFF) at store page 0x52", back.Metadata.Get("region[3]"));
        long store = back.Runs[0].FileOffset;
        Assert.Equal(
            [new PhysicalRun(0, 0x20000, store), new PhysicalRun(0x30000, 0x2000, store + 0x20000),
             new PhysicalRun(High, 0x30000, store + 0x22000), new PhysicalRun(High + 0x40000, 0x10000, store + 0x52000)],
            back.Runs);
        AssertSameBytes(source, back);
        byte[] tail = new byte[0x800];
        Assert.Equal(0x800, back.Read(0x31800, tail));        // the sub-page run was widened with zeros
        Assert.All(tail, b => Assert.Equal(0, b));
        Assert.Equal(0, back.Read(0x20000, tail));            // gaps stay holes
        Assert.Equal(0, back.Read(High + 0x30000, tail));
        if (variant is null)
        {
            Assert.Equal(0x62000L, new FileInfo(_dir.File("split.vmem")).Length);
            using RunMappedMemory vmem = CaptureOpener.Open(_dir.File("split.vmem"));
            Assert.Equal(back.Runs, vmem.Runs);
            AssertSameBytes(source, vmem);
        }
    }

    [SkippableFact]
    public void Cpu_state_is_carried_over()
    {
        byte[] prstatus = new byte[336];
        BinaryPrimitives.WriteUInt64LittleEndian(prstatus.AsSpan(112 + 16 * 8), 0xFFFFFFFF81000000);   // rip
        byte[] elf = CaptureBuilder.Elf([(0, 0x4000, 0x4000)], CaptureBuilder.Note("CORE", 1, prstatus));
        string path = _dir.Write("cpu.elf", elf);
        using RunMappedMemory source = CaptureOpener.Open(path);
        CaptureConverter.Convert(path, source, "vmsn", _dir.File("cpu.vmsn"));
        using RunMappedMemory back = CaptureOpener.Open(_dir.File("cpu.vmsn"));
        CpuState cpu = Assert.Single(back.Metadata.Cpus);
        Assert.True(cpu.TryGet("rip", out ulong rip) && rip == 0xFFFFFFFF81000000);
        Assert.Equal("1", back.Metadata.Get("vcpus"));
    }

    [SkippableFact]
    public void A_state_file_named_like_its_vmem_is_refused()
    {
        string lime = _dir.Write("x.lime", CaptureBuilder.Lime((0, 0x1000)));
        using RunMappedMemory source = CaptureOpener.Open(lime);
        var e = Assert.Throws<ConvertException>(() => CaptureConverter.Convert(lime, source, "vmss", _dir.File("x.vmem")));
        Assert.Contains("cannot end in .vmem", e.Message, StringComparison.Ordinal);
        Assert.Equal(["x.lime"], Directory.GetFileSystemEntries(_dir.Path).Select(p => Path.GetFileName(p)!).ToArray());
    }

    [SkippableFact]
    public void An_existing_vmem_is_never_overwritten()
    {
        string lime = _dir.Write("y.lime", CaptureBuilder.Lime((0, 0x1000)));
        _dir.Write("y.vmem", [1, 2, 3]);
        using RunMappedMemory source = CaptureOpener.Open(lime);
        Assert.Throws<ConvertException>(() => CaptureConverter.Convert(lime, source, "vmsn", _dir.File("y.vmsn")));
        Assert.Equal([1, 2, 3], File.ReadAllBytes(_dir.File("y.vmem")));
        Assert.False(File.Exists(_dir.File("y.vmsn")));
    }
}
