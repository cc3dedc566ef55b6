using CloudMem.Engine.Symbols;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;

namespace CloudMem.Tests.Symbols;

/// <summary>Finding the kernel's BTF in physical memory built in the test: decoys, a smaller module blob,
/// a magic split across scan blocks, holes.</summary>
public sealed class BtfFindTests
{
    /// <summary>Physical memory over byte arrays at given addresses (holes between them).</summary>
    private sealed class SyntheticMemory(params (ulong Address, byte[] Bytes)[] runs) : IPhysicalMemory
    {
        public IReadOnlyList<PhysicalRun> Runs { get; } = [.. runs.Select(r => new PhysicalRun(r.Address, (ulong)r.Bytes.Length, 0))];
        public ulong MaxAddress => Runs[^1].End;
        public string Description => "synthetic";

        public int Read(ulong physicalAddress, Span<byte> destination)
        {
            int done = 0;
            while (done < destination.Length)
            {
                ulong pa = physicalAddress + (ulong)done;
                int index = Array.FindIndex(runs, r => pa >= r.Address && pa - r.Address < (ulong)r.Bytes.Length);
                if (index < 0)
                {
                    break;
                }
                (ulong start, byte[] bytes) = runs[index];
                int count = Math.Min(destination.Length - done, bytes.Length - (int)(pa - start));
                bytes.AsSpan((int)(pa - start), count).CopyTo(destination[done..]);
                done += count;
            }
            return done;
        }

        public void Dispose()
        {
        }
    }

    private static byte[] Vmlinux()
    {
        var b = new BtfBuilder();
        int i = b.AddInt("int", 4, true);
        for (int n = 0; n < 200; n++)
        {
            b.AddStruct($"s{n}", 8, ("a", i, 0, 0), ("b", i, 32, 0));
        }
        return b.Build();
    }

    private static byte[] Module()
    {
        var b = new BtfBuilder();
        b.AddInt("int", 4, true);
        return b.Build();
    }

    [Theory]
    [InlineData(0x234567UL)]       // unaligned, inside a block
    [InlineData(0x0FFFFEUL)]       // magic split across the first 1 MiB block boundary
    [InlineData(0x0FFFFFUL)]
    [InlineData(0x100000UL)]       // exactly at a block start
    public void Finds_the_largest_valid_blob(ulong where)
    {
        var ram = new byte[0x30_0000];
        new Random(7).NextBytes(ram);
        byte[] decoy = [0x9F, 0xEB, 0x01, 0x00, 24, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0x7F];
        decoy.CopyTo(ram, 0x3000);
        byte[] module = Module();
        module.CopyTo(ram, 0x5001);
        byte[] vmlinux = Vmlinux();
        vmlinux.CopyTo(ram, (int)where);
        using var memory = new SyntheticMemory((0, ram), (0x1000_0000, new byte[4096]));

        Assert.True(BtfLoader.TryFind(memory, out ulong pa, out int length));
        Assert.Equal(where, pa);
        Assert.Equal(vmlinux.Length, length);
        TypeModel model = BtfLoader.LoadFromMemory(memory)!;
        Assert.Equal($"BTF in memory at 0x{where:X}", model.Source);
        Assert.Equal(201, model.TypeCount);
    }

    [Fact]
    public void A_module_blob_alone_is_found_and_nothing_is_not()
    {
        var ram = new byte[0x20_0000];
        byte[] module = Module();
        module.CopyTo(ram, 0x8000);
        using (var memory = new SyntheticMemory((0x10_0000, ram)))
        {
            Assert.True(BtfLoader.TryFind(memory, out ulong pa, out int length));
            Assert.Equal((0x10_8000UL, module.Length), (pa, length));
        }

        // A blob cut by a hole, a damaged blob and a bare magic are all rejected.
        byte[] vmlinux = Vmlinux();
        var cut = new byte[0x1000];
        vmlinux.AsSpan(0, 0x800).CopyTo(cut.AsSpan(0x800));
        byte[] damaged = Vmlinux();
        damaged[24 + 4 + 3] = 0x1F;   // first type record: kind 31
        var other = new byte[0x2000];
        damaged.CopyTo(other, 0);
        new byte[] { 0x9F, 0xEB, 0x01, 0x00 }.CopyTo(other, 0x1FFC);
        using var none = new SyntheticMemory((0, cut), (0x10_0000, other));
        Assert.False(BtfLoader.TryFind(none, out _, out _));
        Assert.Null(BtfLoader.LoadFromMemory(none));
    }
}
