using CloudMem.Engine.Symbols;
using System.Diagnostics;
using CloudMem.Engine.Windows;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;
using Xunit.Abstractions;

namespace CloudMem.Tests.Windows;

/// <summary>Finding Windows x64 kernel images (PE + CodeView RSDS) in physical memory built in the test, hostile headers,
/// and the real Linux capture (no Windows kernel there).</summary>
public sealed class KernelImageScannerTests(ITestOutputHelper output) : IDisposable
{
    private const int KernelAddress = 0x200000;   // 2 MiB-aligned, as the loader places the kernel
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>One run over a byte array at address 0.</summary>
    private sealed class ArrayMemory(byte[] bytes) : IPhysicalMemory
    {
        public IReadOnlyList<PhysicalRun> Runs { get; } = bytes.Length == 0 ? [] : [new PhysicalRun(0, (ulong)bytes.Length, 0)];
        public ulong MaxAddress => (ulong)bytes.Length;
        public string Description => "array";

        public int Read(ulong physicalAddress, Span<byte> destination)
        {
            if (physicalAddress >= (ulong)bytes.Length)
            {
                return 0;
            }
            int count = (int)Math.Min((ulong)destination.Length, (ulong)bytes.Length - physicalAddress);
            bytes.AsSpan((int)physicalAddress, count).CopyTo(destination);
            return count;
        }

        public void Dispose()
        {
        }
    }

    [Fact]
    public void Guid_is_formatted_as_symbol_paths_write_it()
    {
        // Data1..Data3 are little-endian on disk: 69 F6 6F 60 | 9B 40 | F7 00 | FC 8C 61 A9 C1 67 01 29
        byte[] onDisk = [0x69, 0xF6, 0x6F, 0x60, 0x9B, 0x40, 0xF7, 0x00, 0xFC, 0x8C, 0x61, 0xA9, 0xC1, 0x67, 0x01, 0x29];
        Assert.Equal("606FF669409B00F7FC8C61A9C1670129", PdbGuid.Format(onDisk));
        Assert.Equal(onDisk, PeImageBuilder.GuidToBytes(PeImageBuilder.Win10Guid));
    }

    [Fact]
    public void Finds_the_kernel_in_a_raw_capture()
    {
        var kernel = new PeImageBuilder { PdbPath = @"d:\os\obj\amd64fre\minkernel\ntos\ntkrnlmp.pdb" };
        var hal = new PeImageBuilder { PdbPath = "hal.pdb", GuidBytes = new byte[16], Age = 3 };
        string raw = _dir.Write("win.raw", PeImageBuilder.RawCapture(4 << 20, (0x11000, hal.Build()), (KernelAddress, kernel.Build())));
        using RunMappedMemory memory = CaptureOpener.Open(raw);

        KernelImageScan scan = KernelImageScanner.Scan(memory);

        Assert.Equal(1024, scan.PagesScanned);
        Assert.False(scan.Truncated);
        Assert.Equal(2, scan.Images.Count);
        PeImageCandidate found = Assert.Single(scan.Kernels);
        Assert.Same(found, scan.Images[0]);   // kernels first
        Assert.Equal((ulong)KernelAddress, found.PhysicalAddress);
        Assert.Equal("ntkrnlmp.pdb", found.PdbName);
        Assert.Equal(PeImageBuilder.Win10Guid, found.Guid);
        Assert.Equal(1u, found.Age);
        Assert.Equal(0x3000u, found.SizeOfImage);
        Assert.Equal("606FF669409B00F7FC8C61A9C1670129-1", found.GuidAge);
        PeImageCandidate other = scan.Images[1];
        Assert.Equal(("hal.pdb", "00000000000000000000000000000000", 3u, 0x11000ul), (other.PdbName, other.Guid, other.Age, other.PhysicalAddress));
        Assert.False(other.IsKernel);
    }

    [Theory]
    [InlineData("ntoskrnl.pdb", true)]
    [InlineData("NTKRPAMP.PDB", true)]
    [InlineData("ntkrnlpa.pdb", true)]
    [InlineData("ntdll.pdb", false)]
    public void Kernel_pdb_names_are_recognised(string name, bool kernel)
    {
        var memory = new ArrayMemory(PeImageBuilder.RawCapture(0x8000, (0x4000, new PeImageBuilder { PdbPath = name }.Build())));
        PeImageCandidate image = Assert.Single(KernelImageScanner.Scan(memory).Images);
        Assert.Equal(name, image.PdbName);
        Assert.Equal(kernel, image.IsKernel);
    }

    [Fact]
    public void The_number_of_images_is_capped_kernels_kept_first()
    {
        var images = new List<(int, byte[])>();
        for (int i = 0; i < 6; i++)
        {
            images.Add((0x4000 * (i + 1), new PeImageBuilder { PdbPath = $"driver{i}.sys.pdb" }.Build()));
        }
        images.Add((0x4000 * 8, new PeImageBuilder().Build()));
        var memory = new ArrayMemory(PeImageBuilder.RawCapture(0x4000 * 9, [.. images]));

        KernelImageScan scan = KernelImageScanner.Scan(memory, maxImages: 3);

        Assert.True(scan.Truncated);
        Assert.Equal(3, scan.Images.Count);
        Assert.Equal("ntkrnlmp.pdb", scan.Images[0].PdbName);
        Assert.Equal(["driver0.sys.pdb", "driver1.sys.pdb"], scan.Images.Skip(1).Select(i => i.PdbName));
    }

    public static TheoryData<string, Action<PeImageBuilder>> Hostile => new()
    {
        { "e_lfanew 0xFFFFFFF0 (far outside the page)", b => b.Lfanew = 0xFFFFFFF0 },
        { "e_lfanew 0x1000 (past the header page)", b => b.Lfanew = 0x1000 },
        { "e_lfanew 0xFF8 (PE header crosses the page end)", b => b.Lfanew = 0xFF8 },
        { "e_lfanew 0x10 (inside the DOS header)", b => b.Lfanew = 0x10 },
        { "machine i386", b => b.Machine = 0x14C },
        { "SizeOfOptionalHeader 0x60 (no debug directory)", b => b.SizeOfOptionalHeader = 0x60 },
        { "SizeOfOptionalHeader 0xFFFF (past the page)", b => b.SizeOfOptionalHeader = 0xFFFF },
        { "SizeOfImage 0 ", b => b.SizeOfImage = 0 },
        { "SizeOfImage 0xFFFFFFFF", b => b.SizeOfImage = 0xFFFFFFFF },
        { "debug directory RVA past SizeOfImage", b => b.DebugRva = 0x2FF0 },
        { "debug directory RVA 0xFFFFFFF0 (overflow)", b => b.DebugRva = 0xFFFFFFF0 },
        { "debug directory size 0xFFFFFFFF", b => b.DebugSize = 0xFFFFFFFF },
        { "debug directory size 4 (less than one entry)", b => b.DebugSize = 4 },
        { "debug entry not CodeView", b => b.DebugType = 4 },
        { "RSDS record outside the image", b => b.RsdsAddress = 0x7FFFFFF0 },
        { "RSDS record RVA 0", b => b.RsdsAddress = 0 },
        { "RSDS record pointing at zeros", b => b.RsdsAddress = 0x2000 },
        { "empty PDB name", b => b.PdbPath = "" },
        { "PDB name ends with a separator", b => b.PdbPath = @"c:\symbols\" },
        { "control characters in the PDB name", b => b.PdbPath = "nt\u0001krnl.pdb" },
    };

    [Theory]
    [MemberData(nameof(Hostile))]
    public void Hostile_headers_are_ignored_without_exception(string name, Action<PeImageBuilder> corrupt)
    {
        var builder = new PeImageBuilder();
        corrupt(builder);
        var memory = new ArrayMemory(PeImageBuilder.RawCapture(0x10000, (0x4000, builder.Build())));
        KernelImageScan scan = KernelImageScanner.Scan(memory);
        Assert.True(scan.Images.Count == 0, name);
    }

    [Fact]
    public void Every_truncation_of_the_image_at_the_end_of_memory_is_ignored_without_exception()
    {
        byte[] image = new PeImageBuilder().Build();
        int found = 0;
        for (int length = 0; length <= image.Length; length += length < 0x1100 ? 1 : 0x100)
        {
            byte[] bytes = new byte[0x1000 + length];
            image.AsSpan(0, length).CopyTo(bytes.AsSpan(0x1000));
            KernelImageScan scan = KernelImageScanner.Scan(new ArrayMemory(bytes));
            found += scan.Images.Count;
            // The image is only complete once the RSDS record and its terminating NUL are in memory.
            Assert.Equal(length >= PeImageBuilder.RsdsRva + 24 + "ntkrnlmp.pdb".Length + 1 ? 1 : 0, scan.Images.Count);
        }
        Assert.True(found > 0);
    }

    [Fact]
    public void Random_garbage_pages_starting_with_MZ_are_ignored()
    {
        var random = new Random(42);
        byte[] bytes = new byte[0x100000];
        random.NextBytes(bytes);
        for (int page = 0; page < bytes.Length; page += 0x1000)
        {
            bytes[page] = (byte)'M';
            bytes[page + 1] = (byte)'Z';
            if (page % 0x2000 == 0)
            {
                bytes[page + 0x3C] = 0x80;   // e_lfanew in range, PE header garbage
                bytes[page + 0x3D] = bytes[page + 0x3E] = bytes[page + 0x3F] = 0;
            }
        }
        Assert.Empty(KernelImageScanner.Scan(new ArrayMemory(bytes)).Images);
    }

    [SkippableFact]
    public void The_real_Linux_capture_has_no_Windows_kernel_and_is_scanned_fast()
    {
        string raw = Fixture.Require("memory.raw");
        using RunMappedMemory memory = CaptureOpener.Open(raw);
        KernelImageScanner.Scan(memory);   // warm the page cache
        var clock = Stopwatch.StartNew();
        KernelImageScan scan = KernelImageScanner.Scan(memory);
        clock.Stop();
        output.WriteLine($"{scan.PagesScanned} pages, {scan.Images.Count} images, {clock.Elapsed.TotalMilliseconds:F1} ms");
        Assert.Empty(scan.Kernels);
        Assert.Equal((long)(memory.TotalBytes() / 0x1000), scan.PagesScanned);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(2), $"scan took {clock.Elapsed.TotalMilliseconds:F0} ms");
    }
}
