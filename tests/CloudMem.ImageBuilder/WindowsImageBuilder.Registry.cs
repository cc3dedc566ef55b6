using System.Buffers.Binary;

namespace CloudMem.ImageBuilder;

/// <summary>
/// Registry hives as the configuration manager holds them: a _CMHIVE per hive on CmpHiveListHead (signature, file
/// paths), the base block (the regf header) in its own allocation, every bin in its own virtually contiguous paged-pool
/// range (bins are not neighbours in memory), and the stable storage map: _HHIVE.Storage[0].Map -> _HMAP_DIRECTORY ->
/// _HMAP_TABLE -> one _HMAP_ENTRY per 4 KiB block. Windows 7 entries hold the block's address (BlockAddress) and the
/// bin's (BinAddress, bit 0 on a bin's first block); Windows 8+ entries hold the bin's address with flag bits
/// (PermanentBinAddress, bit 0 on a bin's first block) and the block's offset in its bin (BlockOffset). Every field is
/// written at the ISF's offset; the build is told by the presence of the fields.
/// </summary>
public sealed partial class WindowsImageBuilder
{
    /// <summary>Virtual base of the bins' paged-pool ranges.</summary>
    public ulong HiveBinBase { get; init; } = 0xFFFFB80C40000000;

    private const int RegfHeader = 0x1000;
    private const int BlocksPerTable = 512;

    private List<LaidOutHive> LayOutHives(IReadOnlyList<ScenarioHive> hives)
    {
        ulong head = KernelBase + (types.Symbols.TryGetValue("CmpHiveListHead", out ulong rva) ? rva : throw new InvalidOperationException("ISF has no CmpHiveListHead"));
        int listOffset = Off("_CMHIVE", "HiveList");
        var laid = new List<LaidOutHive>();
        ulong binVa = HiveBinBase;
        uint pagefile = 0x100;
        foreach (ScenarioHive hive in hives)
        {
            byte[] regf = hive.Bytes ?? throw new InvalidOperationException($"hive {hive.FileFullPath}: no regf bytes (File not loaded)");
            if (regf.Length < RegfHeader + 0x20 || BinaryPrimitives.ReadUInt32LittleEndian(regf) != 0x66676572)
            {
                throw new InvalidOperationException($"hive {hive.FileFullPath}: not a regf file");
            }
            ulong cmhive = AllocatePool(Tag("CM10"), SizeOf("_CMHIVE"));
            PutKernel(cmhive, "_CMHIVE", "Hive.Signature", 0xBEE0BEE0);
            ulong baseBlock = AllocateKernel(RegfHeader);
            _image.WriteVa(Dtb, baseBlock, regf.AsSpan(0, RegfHeader));
            PutKernel(cmhive, "_CMHIVE", "Hive.BaseBlock", baseBlock);
            PutKernelUnicodeString(cmhive + (ulong)Off("_CMHIVE", "FileFullPath"), hive.FileFullPath);
            PutKernelUnicodeString(cmhive + (ulong)Off("_CMHIVE", "FileUserName"), hive.FileUserName ?? "");

            // Bins: each in a fresh range with a gap after it; the map gets one entry per 4 KiB block.
            var bins = new List<LaidOutBin>();
            int at = RegfHeader, ordinal = 0;
            while (at + 0x20 <= regf.Length && BinaryPrimitives.ReadUInt32LittleEndian(regf.AsSpan(at)) == 0x6E696268)
            {
                int size = (int)BinaryPrimitives.ReadUInt32LittleEndian(regf.AsSpan(at + 8));
                if (size < 0x1000 || size % 0x1000 != 0 || at + size > regf.Length)
                {
                    throw new InvalidOperationException($"hive {hive.FileFullPath}: bin at 0x{at:X} has size 0x{size:X}");
                }
                _image.MapFresh(Dtb, binVa, (ulong)size, user: false);
                _image.WriteVa(Dtb, binVa, regf.AsSpan(at, size));
                bool pagedOut = hive.PagedOutBins?.Contains(ordinal) == true;
                bins.Add(new LaidOutBin((uint)(at - RegfHeader), (uint)size, binVa, pagedOut));
                binVa += (ulong)size + 0x10000;
                at += size;
                ordinal++;
            }
            uint length = (uint)(at - RegfHeader);
            ulong directory = AllocateKernel(SizeOf("_HMAP_DIRECTORY"));
            ulong stable = cmhive + (ulong)Off("_CMHIVE", "Hive.Storage");     // Storage[0]
            PutKernel(stable, "_DUAL", "Length", length);
            PutKernel(stable, "_DUAL", "Map", directory);
            var tables = new Dictionary<int, ulong>();
            foreach (LaidOutBin bin in bins)
            {
                for (uint block = 0; block < bin.Size; block += 0x1000)
                {
                    int index = (int)((bin.Offset + block) / 0x1000);
                    if (!tables.TryGetValue(index / BlocksPerTable, out ulong table))
                    {
                        table = AllocateKernel(SizeOf("_HMAP_TABLE"));
                        tables[index / BlocksPerTable] = table;
                        _image.Write64(Dtb, directory + (ulong)(index / BlocksPerTable * 8), table);
                    }
                    ulong entry = table + (ulong)(index % BlocksPerTable * SizeOf("_HMAP_ENTRY"));
                    ulong first = block == 0 ? 1UL : 0;
                    if (Has("_HMAP_ENTRY", "BlockAddress"))
                    {
                        PutKernel(entry, "_HMAP_ENTRY", "BlockAddress", bin.Address + block);
                        PutKernel(entry, "_HMAP_ENTRY", "BinAddress", bin.Address | first);
                    }
                    else
                    {
                        PutKernel(entry, "_HMAP_ENTRY", "BlockOffset", block);
                        PutKernel(entry, "_HMAP_ENTRY", "PermanentBinAddress", bin.Address | first);
                    }
                    PutKernel(entry, "_HMAP_ENTRY", "MemAlloc", block == 0 ? bin.Size : 0);
                }
            }
            foreach (LaidOutBin bin in bins.Where(b => b.PagedOut))
            {
                for (uint page = 0; page < bin.Size; page += 0x1000)
                {
                    _image.PageOut(Dtb, bin.Address + page, pagefile++);
                }
            }
            laid.Add(new LaidOutHive(cmhive, hive.FileFullPath, hive.FileUserName, length, BinaryPrimitives.ReadUInt32LittleEndian(regf.AsSpan(0x24))) { Bins = bins });
        }

        // CmpHiveListHead <-> each _CMHIVE.HiveList, in scenario order.
        for (int i = 0; i < laid.Count; i++)
        {
            ulong link = laid[i].Address + (ulong)listOffset;
            _image.Write64(Dtb, link, i + 1 < laid.Count ? laid[i + 1].Address + (ulong)listOffset : head);
            _image.Write64(Dtb, link + 8, i > 0 ? laid[i - 1].Address + (ulong)listOffset : head);
        }
        _image.Write64(Dtb, head, laid.Count > 0 ? laid[0].Address + (ulong)listOffset : head);
        _image.Write64(Dtb, head + 8, laid.Count > 0 ? laid[^1].Address + (ulong)listOffset : head);
        return laid;
    }
}
