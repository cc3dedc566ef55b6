using CloudMem.Engine.Convert;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;
using CloudMem.VmStateParsers.Writing;

namespace CloudMem.Tests.Writers;

/// <summary>
/// Every writer and every variant against its reader, on one small synthetic capture: the file is recognised by
/// content as the writer's format, every captured byte reads back (the converter's own check), the bytes the writer
/// added (page widening) read as zero and lie within the pages the source touches, and the processor state the format
/// has a place for comes back from the header the writer filled.
/// </summary>
public sealed class WriterLayoutTests : IDisposable
{
    private const ulong Page = 4096;
    private const ulong Cr3 = 0x1AB000;
    private const ulong Rip = 0xFFFFFFFF81234567;
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    // Holes between runs, adjacent pages, and a run that starts and ends inside a page.
    private static readonly (ulong Start, int Length)[] s_ranges = [(0, 0x3000), (0x5000, 0x2000), (0x100000, 0x11000), (0x200800, 0x900)];

    /// <summary>Which registers each format's header carries back (formats without processor state: none).</summary>
    private static readonly Dictionary<string, string[]> s_registersKept = new(StringComparer.Ordinal)
    {
        ["dmp"] = ["cr3"],
        ["vmrs"] = ["cr3", "rip"],
        ["vmsn"] = ["cr3", "rip"],
        ["vmss"] = ["cr3", "rip"],
        ["swsusp"] = ["cr3"],
    };

    public static TheoryData<string, string?> Targets()
    {
        var data = new TheoryData<string, string?>();
        foreach (ICaptureWriter writer in CaptureConverter.Writers)
        {
            data.Add(writer.Name, null);
            foreach (string variant in writer.Variants)
            {
                data.Add(writer.Name, variant);
            }
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Targets))]
    public void Writer_and_reader_agree_on_the_layout(string target, string? variant)
    {
        // Given a capture with holes, an unaligned run and recorded CPU state
        string source = _dir.Write("src.lime", CaptureBuilder.Lime(s_ranges));
        using RunMappedMemory lime = CaptureOpener.Open(source);
        var cpu = new CpuState(0, "test", [new("cr3", Cr3), new("rip", Rip), new("rsp", 0xFFFF8880_0000_1000), new("cr0", 0x80050033), new("cr4", 0x3506F0)]);
        using var memory = new WithCpus(lime, cpu);
        ICaptureWriter writer = CaptureConverter.Find(target)!;
        string output = _dir.File($"out-{variant ?? "default"}.{target}");

        // When it is written
        ConvertResult result = CaptureConverter.Convert(source, memory, target, output, variant);

        // Then the probes pick the writer's format, and every captured byte read back equal (the converter checks that)
        Assert.True(result.Verified);
        Assert.Equal(writer.VerifyAs, CaptureOpener.Detect(output));
        using RunMappedMemory back = CaptureOpener.Open(output);
        List<PageRange> touched = PageRanges.Widen(memory.Runs, (int)Page);
        foreach (PhysicalRun run in back.Runs)
        {
            // Raw pads from 0 to the end; every other format holds only pages that the source touches.
            if (target != "raw")
            {
                Assert.True(touched.Exists(r => r.Start <= run.PhysicalAddress && run.End <= r.End),
                    $"{target}: run 0x{run.PhysicalAddress:X}+0x{run.Length:X} holds pages the source does not touch");
            }
            AssertZeroOutsideSource(back, memory.Runs, run, target);
        }
        // And the processor state the format records comes back from the header the writer filled
        string[] kept = s_registersKept.GetValueOrDefault(target, []);
        foreach (string register in kept)
        {
            Assert.True(back.Metadata.Cpus.Exists(c => c.TryGet(register, out ulong value) && value == (register == "cr3" ? Cr3 : Rip)),
                $"{target}: {register} not read back (CPUs: {string.Join("; ", back.Metadata.Cpus.Select(c => string.Join(",", c.Registers.Select(r => $"{r.Key}=0x{r.Value:X}"))))})");
        }
        if (kept.Length == 0)
        {
            Assert.Empty(back.Metadata.Cpus);
        }
    }

    /// <summary>Bytes of <paramref name="run"/> that the source does not hold read as zero.</summary>
    private static void AssertZeroOutsideSource(IPhysicalMemory copy, IReadOnlyList<PhysicalRun> sourceRuns, PhysicalRun run, string target)
    {
        byte[] buffer = new byte[Page];
        ulong pa = run.PhysicalAddress;
        IEnumerable<PhysicalRun> held = sourceRuns.Where(r => r.End > run.PhysicalAddress && r.PhysicalAddress < run.End);
        foreach (PhysicalRun next in held.Append(new PhysicalRun(run.End, 0, 0)))
        {
            ulong gapEnd = Math.Min(next.PhysicalAddress, run.End);
            while (pa < gapEnd)
            {
                int count = (int)Math.Min((ulong)buffer.Length, gapEnd - pa);
                Assert.Equal(count, copy.Read(pa, buffer.AsSpan(0, count)));
                Assert.False(buffer.AsSpan(0, count).ContainsAnyExcept((byte)0), $"{target}: 0x{pa:X}+0x{count:X} is not in the source but reads non-zero");
                pa += (ulong)count;
            }
            pa = Math.Max(pa, next.End);
        }
    }

    /// <summary>A capture with CPU state in its metadata, as a source with ELF notes would have.</summary>
    private sealed class WithCpus(IPhysicalMemory inner, params CpuState[] cpus) : IPhysicalMemory, ICaptureMetadata
    {
        public CaptureMetadata Metadata { get; } = Build(cpus);

        public IReadOnlyList<PhysicalRun> Runs => inner.Runs;

        public ulong MaxAddress => inner.MaxAddress;

        public string Description => inner.Description;

        public int Read(ulong physicalAddress, Span<byte> destination) => inner.Read(physicalAddress, destination);

        public void Dispose()
        {
        }

        private static CaptureMetadata Build(CpuState[] cpus)
        {
            var metadata = new CaptureMetadata("test capture with CPU state");
            metadata.Cpus.AddRange(cpus);
            return metadata;
        }
    }
}
