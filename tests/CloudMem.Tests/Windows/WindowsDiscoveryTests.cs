using System.Text.Json;
using CloudMem.Engine.Symbols;
using CloudMem.Engine.Windows;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;
using Xunit.Abstractions;

namespace CloudMem.Tests.Windows;

/// <summary>
/// Kernel discovery paths: the x64 low stub (PROCESSOR_START_BLOCK) the image builder lays out as Windows does, the
/// full-scan fallback (images without a stub, or with a stub that does not check out) and the per-capture discovery
/// record in the profile cache (used when verified, rebuilt when damaged or wrong). Every path must give the same
/// kernel, DTB and processes on Windows 7 SP1, 10 19041 and 11 22000 layouts.
/// </summary>
public sealed class WindowsDiscoveryTests(ITestOutputHelper output) : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private (string Raw, string Root, WindowsImageManifest Manifest) Build(string guid, bool stub, string name)
    {
        (string root, TypeModel types) = WindowsSymbols.Load(guid);
        var builder = new WindowsImageBuilder(types, guid, 1) { LowStub = stub ? 0x13000 : null };
        (byte[] image, WindowsImageManifest manifest) = builder.Build(WindowsImageBuilder.AttackScenario());
        return (_dir.Write(name, image), root, manifest);
    }

    private static (ulong, int, ulong, PeImageCandidate, string) Found(WindowsKernel k)
        => (k.Dtb, k.SelfRefIndex, k.KernelBase, k.Image, JsonSerializer.Serialize(WindowsProcesses.List(k).Processes));

    [SkippableTheory]
    [InlineData(WindowsSymbols.Win7)]
    [InlineData(WindowsSymbols.Win10)]
    [InlineData(WindowsSymbols.Win11)]
    public void The_low_stub_finds_what_the_scan_finds(string guid)
    {
        (string withStub, string root, WindowsImageManifest manifest) = Build(guid, stub: true, "stub.raw");
        (string without, _, WindowsImageManifest plain) = Build(guid, stub: false, "plain.raw");
        Assert.Equal(0x13000ul, manifest.LowStub);
        Assert.Null(plain.LowStub);
        using RunMappedMemory a = CaptureOpener.Open(withStub);
        using RunMappedMemory b = CaptureOpener.Open(without);

        WindowsKernel viaStub = WindowsKernel.Open(a, new SymbolStore([root]));
        WindowsKernel viaScan = WindowsKernel.Open(b, new SymbolStore([root]));

        output.WriteLine($"{viaStub.DtbSource} ({viaStub.DiscoveryMilliseconds:0.0} ms) | {viaScan.DtbSource} ({viaScan.DiscoveryMilliseconds:0.0} ms)");
        Assert.Equal("low stub", viaStub.DiscoveryPath);
        Assert.StartsWith("low stub (PROCESSOR_START_BLOCK at physical 0x13000): CR3, kernel below the entry hint 0x", viaStub.DtbSource);
        Assert.EndsWith(", confirmed: System's DirectoryTableBase", viaStub.DtbSource);
        Assert.Equal("scan", viaScan.DiscoveryPath);
        Assert.Equal((manifest.Dtb, manifest.SelfRefIndex, manifest.KernelBase, manifest.KernelPhysical), (viaStub.Dtb, viaStub.SelfRefIndex, viaStub.KernelBase, viaStub.Image.PhysicalAddress));
        Assert.Equal(Found(viaScan), Found(viaStub));
    }

    [SkippableFact]
    public void A_stub_whose_cr3_is_not_a_page_directory_falls_back_to_the_scan()
    {
        (string raw, string root, WindowsImageManifest manifest) = Build(WindowsSymbols.Win10, stub: true, "stub.raw");
        using RunMappedMemory file = CaptureOpener.Open(raw);
        using var overlay = new OverlayMemory(file);
        overlay.PatchUInt64(manifest.LowStub!.Value + WindowsLowStub.Cr3Offset, 0x7000);   // a page of zeros

        WindowsKernel kernel = WindowsKernel.Open(overlay, new SymbolStore([root]));

        Assert.Equal("scan", kernel.DiscoveryPath);
        Assert.Equal((manifest.Dtb, manifest.KernelBase), (kernel.Dtb, kernel.KernelBase));
        Assert.Null(WindowsLowStub.Find(new byte[WindowsLowStub.SearchBytes]));
    }

    [SkippableTheory]
    [InlineData(true)]
    [InlineData(false)]
    public void The_discovery_record_is_used_when_it_verifies_and_rebuilt_when_damaged_or_wrong(bool stub)
    {
        (string raw, string root, WindowsImageManifest manifest) = Build(WindowsSymbols.Win10, stub, "image.raw");
        var cache = new ProfileCache(_dir.File("cache"));
        using RunMappedMemory memory = CaptureOpener.Open(raw);
        var symbols = new SymbolStore([root], cache: cache);

        WindowsKernel first = WindowsKernel.Open(memory, symbols);
        ProfileCacheEntry record = Assert.Single(cache.List(), e => e.Kind == "discovery");
        Assert.True(record.Valid);
        Assert.Contains($"DTB 0x{manifest.Dtb:X}", record.Description);
        WindowsKernel second = WindowsKernel.Open(memory, symbols);

        Assert.Equal(stub ? "low stub" : "scan", first.DiscoveryPath);
        Assert.Equal("profile cache", second.DiscoveryPath);
        Assert.StartsWith("profile cache (record verified: kernel PE header GUID/age at the base); " + first.DtbSource, second.DtbSource);
        Assert.Equal(Found(first), Found(second));

        // Damaged: one byte of the entry flipped -> discovery runs again and the entry is rewritten.
        byte[] bytes = File.ReadAllBytes(record.Path);
        bytes[^3] ^= 0x55;
        File.WriteAllBytes(record.Path, bytes);
        Assert.False(Assert.Single(cache.List(), e => e.Kind == "discovery").Valid);
        WindowsKernel rebuilt = WindowsKernel.Open(memory, symbols);
        Assert.Equal(first.DiscoveryPath, rebuilt.DiscoveryPath);
        Assert.True(Assert.Single(cache.List(), e => e.Kind == "discovery").Valid);
        Assert.Equal("profile cache", WindowsKernel.Open(memory, symbols).DiscoveryPath);

        // Wrong: a record for this capture naming another kernel base -> the PE header check fails, discovery runs again.
        string identity = WindowsKernel.CaptureIdentity(memory, Low(memory));
        cache.PutDiscovery(identity, new WindowsDiscovery(first.Image, first.Dtb, first.SelfRefIndex, first.KernelBase + 0x200000, "planted", Confirmed: true));
        WindowsKernel checkedAgain = WindowsKernel.Open(memory, symbols);
        Assert.Equal(first.DiscoveryPath, checkedAgain.DiscoveryPath);
        Assert.Equal(Found(first), Found(checkedAgain));
        Assert.Equal(first.KernelBase, cache.TryGetDiscovery(identity)!.KernelBase);
        Assert.Equal("profile cache", WindowsKernel.Open(memory, symbols).DiscoveryPath);
    }

    [SkippableFact]
    public void A_record_of_another_capture_with_the_same_low_memory_is_not_trusted()
    {
        // Both images have the same size, DTB and kernel base, so their first megabyte (stub included) is the same and
        // so is their identity; the kernel PE header check tells them apart and each open rewrites the record.
        (string a, string root, WindowsImageManifest first) = Build(WindowsSymbols.Win10, stub: true, "a.raw");
        (string b, _, WindowsImageManifest other) = Build(WindowsSymbols.Win11, stub: true, "b.raw");
        (string rootB, _) = WindowsSymbols.Load(WindowsSymbols.Win11);
        var cache = new ProfileCache(_dir.File("cache"));
        using RunMappedMemory memoryA = CaptureOpener.Open(a);
        using RunMappedMemory memoryB = CaptureOpener.Open(b);
        Assert.Equal(WindowsKernel.CaptureIdentity(memoryA, Low(memoryA)), WindowsKernel.CaptureIdentity(memoryB, Low(memoryB)));

        WindowsKernel.Open(memoryA, new SymbolStore([root], cache: cache));
        WindowsKernel kernel = WindowsKernel.Open(memoryB, new SymbolStore([rootB], cache: cache));
        WindowsKernel again = WindowsKernel.Open(memoryA, new SymbolStore([root], cache: cache));

        Assert.Equal(("low stub", WindowsSymbols.Win11, other.KernelBase), (kernel.DiscoveryPath, kernel.Image.Guid, kernel.KernelBase));
        Assert.Equal(("low stub", WindowsSymbols.Win10, first.KernelBase), (again.DiscoveryPath, again.Image.Guid, again.KernelBase));
        Assert.Single(cache.List(), e => e.Kind == "discovery");
    }

    private static byte[] Low(IPhysicalMemory memory)
    {
        byte[] low = new byte[WindowsLowStub.SearchBytes];
        memory.Read(0, low);
        return low;
    }
}
