using CloudMem.Engine.Linux;
using CloudMem.Engine.Symbols;
using CloudMem.Engine.Windows;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;

namespace CloudMem.Tests.Core;

/// <summary>Parallel scans give the rows of a one-thread scan, in the same order, and see matches across block
/// boundaries, adjacent runs and unreadable pages as a plain search does.</summary>
public sealed class ParallelScanTests(WindowsAttackImages images) : IClassFixture<WindowsAttackImages>
{
    /// <summary>Runs over byte arrays; a run of Zero storage; one page that cannot be read (a short read).</summary>
    private sealed class Memory(byte[] bytes, ulong zeroStart, ulong zeroLength, ulong badPage) : IPhysicalMemory
    {
        public IReadOnlyList<PhysicalRun> Runs { get; } =
        [
            new PhysicalRun(0, zeroStart, 0),
            new PhysicalRun(zeroStart, zeroLength, -1, RunStorage.Zero),
            new PhysicalRun(zeroStart + zeroLength, (ulong)bytes.Length - zeroStart - zeroLength, (long)(zeroStart + zeroLength)),
        ];

        public ulong MaxAddress => (ulong)bytes.Length;

        public string Description => "synthetic";

        public int Read(ulong physicalAddress, Span<byte> destination)
        {
            int count = (int)Math.Min((ulong)destination.Length, MaxAddress - Math.Min(physicalAddress, MaxAddress));
            if (physicalAddress <= badPage && physicalAddress + (ulong)count > badPage)
            {
                count = (int)(badPage - physicalAddress);
            }
            bytes.AsSpan((int)physicalAddress, count).CopyTo(destination);
            return count;
        }

        public void Dispose()
        {
        }
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Matches_are_those_of_a_plain_search_in_order_on_any_thread_count(bool coalesce)
    {
        byte[] bytes = new byte[24 << 20];
        new Random(7).NextBytes(bytes);
        const ulong zeroStart = 9 << 20, zeroLength = 1 << 20, badPage = 17 << 20;
        Array.Clear(bytes, (int)zeroStart, (int)zeroLength);
        byte[] needle = "CLOUDMEM-NEEDLE"u8.ToArray();
        // Across block boundaries (4 MiB), across the run boundaries and inside the unreadable page.
        foreach (int at in new[] { 100, (4 << 20) - 7, (8 << 20) - 1, (int)zeroStart - 5, (int)(zeroStart + zeroLength) - 3, (12 << 20) + 4096, (int)badPage + 100, bytes.Length - needle.Length })
        {
            needle.CopyTo(bytes, at);
        }
        using var memory = new Memory(bytes, zeroStart, zeroLength, badPage);
        var expected = new List<ulong>();
        byte[] visible = (byte[])bytes.Clone();
        Array.Clear(visible, (int)badPage, 4096);
        for (int i = visible.AsSpan().IndexOf(needle); i >= 0; i = visible.AsSpan(i + 1).IndexOf(needle) is int next and >= 0 ? i + 1 + next : -1)
        {
            bool crossesRun = i < (int)zeroStart && i + needle.Length > (int)zeroStart || i < (int)(zeroStart + zeroLength) && i + needle.Length > (int)(zeroStart + zeroLength);
            if (coalesce || !crossesRun)
            {
                expected.Add((ulong)i);
            }
        }
        Assert.Equal(5 + (coalesce ? 2 : 0), expected.Count);   // the one in the unreadable page is not seen
        foreach (int threads in new[] { 1, 2, 5 })
        {
            long lastDone = -1;
            List<ulong> found = [.. ParallelScan.Blocks<ulong>(memory, 4 << 20, needle.Length - 1, (in ScanBlock block, ReadOnlySpan<byte> data, List<ulong> hits) =>
            {
                for (int i = data.IndexOf(needle); i >= 0 && i < block.Owned; i = data[(i + 1)..].IndexOf(needle) is int next and >= 0 ? i + 1 + next : -1)
                {
                    hits.Add(block.PhysicalAddress + (ulong)i);
                }
            }, coalesce, threads, (done, total) => lastDone = done)];
            Assert.Equal(expected, found);
            Assert.Equal(coalesce ? bytes.Length : bytes.Length - (long)zeroLength, lastDone);
        }
    }

    [Fact]
    public void A_failing_block_throws_its_own_exception_and_a_scan_stopped_early_ends_its_threads()
    {
        byte[] bytes = new byte[64 << 20];
        using var memory = new Memory(bytes, 32 << 20, 1 << 20, ulong.MaxValue);
        var failure = Assert.Throws<InvalidDataException>(() => ParallelScan.Blocks<int>(memory, 4 << 20, 0,
            (in ScanBlock block, ReadOnlySpan<byte> data, List<int> hits) =>
            {
                if (block.PhysicalAddress == 20 << 20)
                {
                    throw new InvalidDataException("block at 20 MiB");
                }
                hits.Add(1);
            }, degreeOfParallelism: 3).ToList());
        Assert.Equal("block at 20 MiB", failure.Message);

        // Taking the first results and dropping the enumerator stops the scan threads (Dispose joins them).
        int scanned = 0;
        List<ulong> first = [.. ParallelScan.Blocks<ulong>(memory, 1 << 20, 0, (in ScanBlock block, ReadOnlySpan<byte> data, List<ulong> hits) =>
        {
            Interlocked.Increment(ref scanned);
            hits.Add(block.PhysicalAddress);
        }, degreeOfParallelism: 2).Take(3)];
        Assert.Equal(new ulong[] { 0, 1 << 20, 2 << 20 }, first);
        int after = Volatile.Read(ref scanned);
        Thread.Sleep(50);
        Assert.Equal(after, Volatile.Read(ref scanned));
        Assert.True(after < 63, $"{after} of 63 blocks scanned after the caller stopped at 3");
    }

    [SkippableFact]
    public void Linux_psscan_rows_are_the_same_on_one_thread_and_many()
    {
        using RunMappedMemory memory = CaptureOpener.Open(Fixture.Require("memory.raw"));
        LinuxContext context = LinuxContext.Open(memory);
        (List<LinuxScannedTask> one, List<string> oneNotes) = LinuxPsScan.Scan(context, degreeOfParallelism: 1);
        (List<LinuxScannedTask> many, List<string> manyNotes) = LinuxPsScan.Scan(context, degreeOfParallelism: 4);
        Assert.True(one.Count > 50);
        Assert.Equal(one, many);
        Assert.Equal(oneNotes, manyNotes);
    }

    [SkippableTheory]
    [InlineData(WindowsSymbols.Win10)]
    [InlineData(WindowsSymbols.Win7)]
    public void Windows_pool_scans_give_the_same_rows_on_one_thread_and_many(string guid)
    {
        WindowsAttackImages.Built image = images.Get(guid);
        using RunMappedMemory memory = CaptureOpener.Open(image.Raw);
        WindowsKernel kernel = WindowsKernel.Open(memory, new SymbolStore([image.Root]));
        var one = WindowsPoolScanner.PsScan(kernel, degreeOfParallelism: 1);
        var many = WindowsPoolScanner.PsScan(kernel, degreeOfParallelism: 3);
        Assert.Equal(image.Manifest.Processes.Count + image.Manifest.Unlinked.Count, one.Rows.Count);
        Assert.Equal(one.Rows, many.Rows);
        var modOne = WindowsModules.ModScan(kernel, degreeOfParallelism: 1);
        var modMany = WindowsModules.ModScan(kernel, degreeOfParallelism: 3);
        Assert.NotEmpty(modOne.Rows);
        Assert.Equal(modOne.Rows, modMany.Rows);
        Assert.Equal(modOne.Notes, modMany.Notes);
    }
}
