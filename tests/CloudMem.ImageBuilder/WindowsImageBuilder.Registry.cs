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
            MapBins(directory, bins);
            var done = new LaidOutHive(cmhive, hive.FileFullPath, hive.FileUserName, length, BinaryPrimitives.ReadUInt32LittleEndian(regf.AsSpan(0x24))) { Bins = bins };
            if (hive.VolatileLinks is { Count: > 0 } links)
            {
                done.VolatileLength = LayOutVolatileLinks(cmhive, bins[0].Address + done.RootCell, done.RootCell, links, ref binVa);
            }
            foreach (LaidOutBin bin in bins.Where(b => b.PagedOut))
            {
                for (uint page = 0; page < bin.Size; page += 0x1000)
                {
                    _image.PageOut(Dtb, bin.Address + page, pagefile++);
                }
            }
            laid.Add(done);
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

    /// <summary>One _HMAP_ENTRY per 4 KiB block of <paramref name="bins"/>, tables allocated as needed.</summary>
    private void MapBins(ulong directory, List<LaidOutBin> bins)
    {
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
    }

    /// <summary>
    /// Volatile storage: one 4 KiB bin with an lf index, a KEY_IS_VOLATILE | KEY_SYM_LINK key per link and its
    /// SymbolicLinkValue (REG_LINK); the root key in memory (not in the file) gets the volatile subkey count and list.
    /// Returns Storage[1].Length.
    /// </summary>
    private uint LayOutVolatileLinks(ulong cmhive, ulong rootVa, uint rootCell, IReadOnlyDictionary<string, string> links, ref ulong binVa)
    {
        const uint Volatile = 0x80000000;
        byte[] bin = new byte[0x1000];
        "hbin"u8.CopyTo(bin);
        BinaryPrimitives.WriteUInt32LittleEndian(bin.AsSpan(8), 0x1000);
        int at = 0x20;
        int Cell(ReadOnlySpan<byte> data)
        {
            int size = (4 + data.Length + 7) & ~7, cell = at;
            BinaryPrimitives.WriteInt32LittleEndian(bin.AsSpan(at), -size);
            data.CopyTo(bin.AsSpan(at + 4));
            at += size;
            return cell;
        }
        var keys = new List<(int Cell, string Name)>();
        foreach ((string name, string target) in links.OrderBy(l => l.Key, StringComparer.OrdinalIgnoreCase))
        {
            byte[] text = System.Text.Encoding.Unicode.GetBytes(target);
            int data = Cell(text);
            byte[] vk = new byte[0x14 + "SymbolicLinkValue".Length];
            "vk"u8.CopyTo(vk);
            BinaryPrimitives.WriteUInt16LittleEndian(vk.AsSpan(2), (ushort)"SymbolicLinkValue".Length);
            BinaryPrimitives.WriteUInt32LittleEndian(vk.AsSpan(4), (uint)text.Length);
            BinaryPrimitives.WriteUInt32LittleEndian(vk.AsSpan(8), Volatile | (uint)data);
            BinaryPrimitives.WriteUInt32LittleEndian(vk.AsSpan(0x0C), 6);                 // REG_LINK
            BinaryPrimitives.WriteUInt16LittleEndian(vk.AsSpan(0x10), 1);                 // ASCII name
            System.Text.Encoding.ASCII.GetBytes("SymbolicLinkValue").CopyTo(vk, 0x14);
            int valueCell = Cell(vk);
            int valueList = Cell(BitConverter.GetBytes(Volatile | (uint)valueCell));
            byte[] nk = new byte[0x4C + name.Length];
            "nk"u8.CopyTo(nk);
            BinaryPrimitives.WriteUInt16LittleEndian(nk.AsSpan(2), 0x31);               // KEY_IS_VOLATILE | KEY_SYM_LINK | KEY_COMP_NAME
            BinaryPrimitives.WriteInt64LittleEndian(nk.AsSpan(4), SystemTime.AddHours(-1.5).ToFileTimeUtc());
            BinaryPrimitives.WriteUInt32LittleEndian(nk.AsSpan(0x10), rootCell);
            foreach (int field in new[] { 0x1C, 0x20, 0x2C, 0x30 })
            {
                BinaryPrimitives.WriteUInt32LittleEndian(nk.AsSpan(field), 0xFFFFFFFF);
            }
            BinaryPrimitives.WriteUInt32LittleEndian(nk.AsSpan(0x24), 1);
            BinaryPrimitives.WriteUInt32LittleEndian(nk.AsSpan(0x28), Volatile | (uint)valueList);
            BinaryPrimitives.WriteUInt16LittleEndian(nk.AsSpan(0x48), (ushort)name.Length);
            System.Text.Encoding.ASCII.GetBytes(name).CopyTo(nk, 0x4C);
            keys.Add((Cell(nk), name));
        }
        byte[] lf = new byte[4 + 8 * keys.Count];
        "lf"u8.CopyTo(lf);
        BinaryPrimitives.WriteUInt16LittleEndian(lf.AsSpan(2), (ushort)keys.Count);
        for (int i = 0; i < keys.Count; i++)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(lf.AsSpan(4 + 8 * i), Volatile | (uint)keys[i].Cell);
            System.Text.Encoding.ASCII.GetBytes(keys[i].Name.PadRight(4, '\0')[..4]).CopyTo(lf, 8 + 8 * i);
        }
        int list = Cell(lf);
        BinaryPrimitives.WriteInt32LittleEndian(bin.AsSpan(at), 0x1000 - at);

        _image.MapFresh(Dtb, binVa, 0x1000, user: false);
        _image.WriteVa(Dtb, binVa, bin);
        ulong directory = AllocateKernel(SizeOf("_HMAP_DIRECTORY"));
        ulong storage = cmhive + (ulong)Off("_CMHIVE", "Hive.Storage") + (ulong)SizeOf("_DUAL");   // Storage[1]
        PutKernel(storage, "_DUAL", "Length", 0x1000);
        PutKernel(storage, "_DUAL", "Map", directory);
        MapBins(directory, [new LaidOutBin(0, 0x1000, binVa, false)]);
        binVa += 0x1000 + 0x10000;
        _image.Write32(Dtb, rootVa + 4 + 0x18, (uint)keys.Count);                       // nk volatile subkey count
        _image.Write32(Dtb, rootVa + 4 + 0x20, Volatile | (uint)list);                   // nk volatile subkey list
        return 0x1000;
    }
}
