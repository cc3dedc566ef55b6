using CloudMem.Engine.Paging;
using CloudMem.Engine.Symbols;
using CloudMem.Engine.Windows;
using CloudMem.Engine.Yara;
using CloudMem.Tests.Support;
using CloudMem.Tests.Windows;
using CloudMem.VmStateParsers;

namespace CloudMem.Tests.Yara;

/// <summary>windows.yarascan against the shellcode the image builder injected into one process (its manifest).</summary>
public sealed class WindowsYaraScanTests(WindowsAttackImages images) : IClassFixture<WindowsAttackImages>
{
    private const ulong Shellcode = 0x0000020000100000; // the injected region whose code starts "cld; and rsp, -16" (fc 48 83 e4 f0)

    [SkippableFact]
    public void The_injected_shellcode_hits_its_process_at_the_region_start()
    {
        WindowsAttackImages.Built built = images.Get(WindowsSymbols.Win10);
        using var dir = new TempDir();
        string rules = Path.Combine(dir.Path, "shellcode.yar");
        File.WriteAllText(rules, "rule injected_shellcode { strings: $code = { FC 48 83 E4 F0 } condition: $code }\n");
        try
        {
            YaraRules.Compile(rules).Dispose();
        }
        catch (YaraUnavailableException e) when (Environment.GetEnvironmentVariable("CLOUDMEM_REQUIRE_FIXTURES") != "1")
        {
            Skip.If(true, e.Message);
        }
        long owner = built.Manifest.Processes.Single(p => p.InjectedRegions.Contains(Shellcode)).Pid;
        using RunMappedMemory memory = CaptureOpener.Open(built.Raw);
        WindowsKernel kernel = WindowsKernel.Open(memory, new SymbolStore([built.Root]));

        var all = WindowsYaraScan.Scan(kernel, rules);
        WindowsYaraHit hit = Assert.Single(all.Rows, r => r.VirtualAddress == Shellcode);
        Assert.Equal(owner, hit.Pid);
        Assert.Equal(Shellcode, hit.VadStart);
        Assert.Equal(5, hit.Length);
        WindowsProcess process = Assert.Single(WindowsProcesses.Select(kernel, new HashSet<long> { owner }, default).Processes);
        AddressSpace space = kernel.ProcessSpace(process.Dtb);
        Assert.True(space.TryTranslate(Shellcode, out Translation t, out _));
        Assert.Equal(t.PhysicalAddress, hit.PhysicalAddress);
        byte[] at = new byte[5];
        Assert.Equal(5, memory.Read(hit.PhysicalAddress!.Value, at));
        Assert.Equal(new byte[] { 0xFC, 0x48, 0x83, 0xE4, 0xF0 }, at);

        // --pid of another process: not this hit.
        long other = built.Manifest.Processes.First(p => p.Pid != owner).Pid;
        Assert.DoesNotContain(WindowsYaraScan.Scan(kernel, rules, new HashSet<long> { other }).Rows, r => r.VirtualAddress == Shellcode && r.Pid == owner);
    }
}
