using System.Buffers.Binary;
using System.Text;
using CloudMem.Engine.Symbols;
using CloudMem.Tests.Windows;

namespace CloudMem.Tests.Support;

/// <summary>One process of a <see cref="WindowsImageBuilder"/> scenario.</summary>
/// <param name="Unlinked">In memory (with its pool allocation) but not on ActiveProcessLinks, as an exited or hidden process.</param>
public sealed record WindowsScenarioProcess(int Pid, int Ppid, string ImageFileName, DateTime CreateTime, bool Unlinked = false);

/// <summary>One _EPROCESS the builder laid out (what pslist should report).</summary>
public sealed record WindowsLaidOutProcess(ulong Address, int Pid, int Ppid, string ImageFileName, DateTime CreateTime, ulong Dtb)
{
    /// <summary>Physical address of the _EPROCESS body.</summary>
    public ulong Physical { get; init; }

    /// <summary>Physical address of its _POOL_HEADER.</summary>
    public ulong PoolHeader { get; init; }
}

/// <summary>What <see cref="WindowsImageBuilder.Build"/> laid out.</summary>
public sealed record WindowsImageManifest(
    ulong Dtb, int SelfRefIndex, ulong KernelBase, ulong KernelPhysical, ulong PsActiveProcessHead,
    IReadOnlyList<WindowsLaidOutProcess> Processes)
{
    /// <summary>Processes laid out (with pool headers) but not on the list.</summary>
    public IReadOnlyList<WindowsLaidOutProcess> Unlinked { get; init; } = [];
}

/// <summary>
/// A small synthetic x64 Windows physical image built from a real ISF's layouts: 4-level page tables with a
/// self-referencing PML4 entry, the kernel image (a minimal PE with the ISF's RSDS record) mapped with 2 MiB pages at a
/// canonical kernel address, and a kernel heap of 4 KiB pages (scattered physically) holding one _EPROCESS per
/// scenario process, linked through ActiveProcessLinks into a circular list headed by PsActiveProcessHead.
/// </summary>
public sealed class WindowsImageBuilder(TypeModel types, string guid, uint age)
{
    private const ulong Present = 1, Write = 2, LargePage = 0x80, Accessed = 0x20, Dirty = 0x40;
    private const ulong TableFlags = Present | Write | Accessed | Dirty;
    private const int Page = 0x1000;
    private const ulong TwoMiB = 0x200000;

    /// <summary>The PDB path written in the RSDS record (Windows kernels record the bare file name).</summary>
    public string PdbPath { get; init; } = "ntkrnlmp.pdb";

    /// <summary>Size of the raw image.</summary>
    public int ImageSize { get; init; } = 64 << 20;

    /// <summary>Index of the self-referencing PML4 entry (Windows 7's fixed 0x1ED by default).</summary>
    public int SelfRefIndex { get; init; } = 0x1ED;

    /// <summary>Virtual base of the kernel image (2 MiB aligned).</summary>
    public ulong KernelBase { get; init; } = 0xFFFFF8034A200000;

    /// <summary>Virtual base of the kernel heap holding the _EPROCESS structures.</summary>
    public ulong HeapBase { get; init; } = 0xFFFFA50C12340000;

    /// <summary>Physical base of the kernel image (2 MiB aligned).</summary>
    public ulong KernelPhysical { get; init; } = 0x400000;

    /// <summary>Physical address of the kernel's PML4 (the System process's DTB).</summary>
    public ulong Dtb { get; init; } = 0x1AA000;

    /// <summary>A typical scenario: System, smss, csrss, services, svchost, winword with a powershell child.</summary>
    public static IReadOnlyList<WindowsScenarioProcess> TypicalScenario()
    {
        var boot = new DateTime(2024, 7, 7, 9, 30, 0, DateTimeKind.Utc);
        return
        [
            new(4, 0, "System", boot),
            new(348, 4, "smss.exe", boot.AddSeconds(2)),
            new(452, 440, "csrss.exe", boot.AddSeconds(5)),
            new(612, 520, "services.exe", boot.AddSeconds(7)),
            new(780, 612, "svchost.exe", boot.AddSeconds(9.5)),
            new(5120, 3980, "WINWORD.EXE", boot.AddMinutes(42)),
            new(6044, 5120, "powershell.exe", boot.AddMinutes(43).AddTicks(1234567)),
        ];
    }

    private int Off(string structName, string field)
        => types.TryGetOffset(structName, field, out int offset) ? offset : throw new InvalidOperationException($"ISF has no {structName}.{field}");

    /// <summary>Writes a (bit)field of a structure at a physical address, with the ISF's bit position and width.</summary>
    private void PutBits(byte[] image, ulong structPa, string structName, string field, ulong value)
    {
        FieldInfo f = types.FindField(structName, field) ?? throw new InvalidOperationException($"ISF has no {structName}.{field}");
        int bits = f.IsBitfield ? f.BitSize : f.Type.Resolve().Size * 8;
        for (int b = 0; b < bits; b++)
        {
            long bit = f.BitOffset + b;
            int at = checked((int)(structPa + (ulong)(bit / 8)));
            int shift = (int)(bit % 8);
            image[at] = (byte)((image[at] & ~(1 << shift)) | (int)(((value >> b) & 1) << shift));
        }
    }

    /// <summary>Lays out the image.</summary>
    public (byte[] Image, WindowsImageManifest Manifest) Build(IReadOnlyList<WindowsScenarioProcess> processes)
    {
        byte[] image = new byte[ImageSize];
        ulong nextTable = 0x100000;                  // page tables from 1 MiB (the kernel PML4 is placed apart, at Dtb)
        ulong AllocTable()
        {
            ulong pa = nextTable;
            nextTable += Page;
            if (nextTable > KernelPhysical)
            {
                throw new InvalidOperationException("out of page-table space");
            }
            return pa;
        }
        void Put(ulong pa, ulong value) => BinaryPrimitives.WriteUInt64LittleEndian(image.AsSpan(checked((int)pa)), value);
        ulong Get(ulong pa) => BinaryPrimitives.ReadUInt64LittleEndian(image.AsSpan(checked((int)pa)));
        ulong Table(ulong table, int index)
        {
            ulong entry = Get(table + (ulong)index * 8);
            if ((entry & Present) != 0)
            {
                return entry & 0x000FFFFFFFFFF000;
            }
            ulong fresh = AllocTable();
            Put(table + (ulong)index * 8, fresh | TableFlags);
            return fresh;
        }
        int Index(ulong va, int shift) => (int)((va >> shift) & 0x1FF);
        void Map4K(ulong va, ulong pa)
        {
            ulong pt = Table(Table(Table(Dtb, Index(va, 39)), Index(va, 30)), Index(va, 21));
            Put(pt + (ulong)Index(va, 12) * 8, pa | TableFlags | (1UL << 63));
        }
        void Map2M(ulong va, ulong pa)
        {
            ulong pd = Table(Table(Dtb, Index(va, 39)), Index(va, 30));
            Put(pd + (ulong)Index(va, 21) * 8, pa | TableFlags | LargePage);
        }

        Put(Dtb + (ulong)SelfRefIndex * 8, Dtb | Present | Write | Accessed | Dirty | (1UL << 63));

        // Kernel image: PE header with the ISF's RSDS record, mapped with 2 MiB pages far enough to cover PsActiveProcessHead.
        ulong headRva = types.Symbols.TryGetValue("PsActiveProcessHead", out ulong rva) ? rva : throw new InvalidOperationException("ISF has no PsActiveProcessHead");
        ulong kernelSize = (headRva + 0x10 + TwoMiB - 1) & ~(TwoMiB - 1);
        if (KernelPhysical + kernelSize > (ulong)ImageSize / 2)
        {
            throw new InvalidOperationException($"kernel image of 0x{kernelSize:X} bytes does not fit");
        }
        byte[] pe = new PeImageBuilder
        {
            GuidBytes = PeImageBuilder.GuidToBytes(guid),
            Age = age,
            PdbPath = PdbPath,
            SizeOfImage = (uint)kernelSize,
        }.Build();
        pe.CopyTo(image.AsSpan((int)KernelPhysical));
        for (ulong o = 0; o < kernelSize; o += TwoMiB)
        {
            Map2M(KernelBase + o, KernelPhysical + o);
        }
        ulong headVa = KernelBase + headRva;
        ulong headPa = KernelPhysical + headRva;

        // Process page directories (each with the kernel half copied later) and heap pages, from the top of the image down
        // so that heap virtual order and physical order differ.
        ulong nextData = (ulong)ImageSize - Page;
        ulong AllocData()
        {
            ulong pa = nextData;
            nextData -= Page;
            return pa;
        }
        int size = types.TryGetSize("_EPROCESS", out int s) ? s : throw new InvalidOperationException("ISF has no _EPROCESS");
        int pages = (size + Page - 1) / Page;
        int links = Off("_EPROCESS", "ActiveProcessLinks");
        // The process object's pool allocation, as Windows lays it out: _POOL_HEADER, optional object headers (here the
        // quota info, InfoMask bit 0x08), _OBJECT_HEADER, then the _EPROCESS body at _OBJECT_HEADER.Body.
        int poolHeaderSize = types.TryGetSize("_POOL_HEADER", out int ph) ? ph : throw new InvalidOperationException("ISF has no _POOL_HEADER");
        int quotaSize = types.TryGetSize("_OBJECT_HEADER_QUOTA_INFO", out int q) ? q : throw new InvalidOperationException("ISF has no _OBJECT_HEADER_QUOTA_INFO");
        int bodyOffset = Off("_OBJECT_HEADER", "Body");
        int poolToBody = poolHeaderSize + quotaSize + bodyOffset;
        if (poolToBody > 0x80)
        {
            throw new InvalidOperationException("pool and object headers do not fit before the _EPROCESS page offset 0x80");
        }
        var all = new List<WindowsLaidOutProcess>();
        var physicalOf = new List<ulong>();
        var dtbs = new List<ulong>();
        for (int i = 0; i < processes.Count; i++)
        {
            WindowsScenarioProcess p = processes[i];
            ulong va = HeapBase + (ulong)(i * pages * Page) + 0x80;   // not page aligned, as pool allocations are not
            ulong firstPa = 0;
            for (int k = 0; k <= pages; k++)
            {
                ulong pa = AllocData();
                Map4K((va & ~(ulong)(Page - 1)) + (ulong)(k * Page), pa);
                if (k == 0)
                {
                    firstPa = pa;
                }
            }
            ulong dtb = p.Pid == 4 ? Dtb : AllocData();
            dtbs.Add(dtb);
            physicalOf.Add(firstPa);
            all.Add(new WindowsLaidOutProcess(va, p.Pid, p.Ppid, p.ImageFileName.Length > 15 ? p.ImageFileName[..15] : p.ImageFileName, p.CreateTime, dtb)
            {
                Physical = firstPa + (va & (Page - 1)),
                PoolHeader = firstPa + (va & (Page - 1)) - (ulong)poolToBody,
            });
        }
        var laid = all.Where((_, i) => !processes[i].Unlinked).ToList();

        // Translation for writing fields: the heap pages just mapped.
        ulong Translate(ulong va)
        {
            ulong pdpt = Get(Dtb + (ulong)Index(va, 39) * 8) & 0x000FFFFFFFFFF000;
            ulong pd = Get(pdpt + (ulong)Index(va, 30) * 8) & 0x000FFFFFFFFFF000;
            ulong pde = Get(pd + (ulong)Index(va, 21) * 8);
            if ((pde & LargePage) != 0)
            {
                return (pde & 0x000FFFFFFFE00000) + (va & (TwoMiB - 1));
            }
            ulong pte = Get((pde & 0x000FFFFFFFFFF000) + (ulong)Index(va, 12) * 8);
            return (pte & 0x000FFFFFFFFFF000) + (va & (Page - 1));
        }
        void PutVa(ulong va, ulong value)
        {
            for (int b = 0; b < 8; b++)
            {
                image[Translate(va + (ulong)b)] = (byte)(value >> (8 * b));
            }
        }
        void PutBytesVa(ulong va, ReadOnlySpan<byte> bytes)
        {
            for (int b = 0; b < bytes.Length; b++)
            {
                image[Translate(va + (ulong)b)] = bytes[b];
            }
        }

        int pidOff = Off("_EPROCESS", "UniqueProcessId");
        int ppidOff = Off("_EPROCESS", "InheritedFromUniqueProcessId");
        int nameOff = Off("_EPROCESS", "ImageFileName");
        int timeOff = Off("_EPROCESS", "CreateTime");
        int dtbOff = Off("_EPROCESS", "Pcb") + Off("_KPROCESS", "DirectoryTableBase");
        int allocation = (poolToBody + size + 15) & ~15;
        for (int i = 0; i < all.Count; i++)
        {
            WindowsLaidOutProcess p = all[i];
            PutBits(image, p.PoolHeader, "_POOL_HEADER", "BlockSize", (ulong)(allocation / 16));
            PutBits(image, p.PoolHeader, "_POOL_HEADER", "PoolType", 2);           // NonPagedPool, stored + 1 (0 is free)
            PutBits(image, p.PoolHeader, "_POOL_HEADER", "PoolTag", 0x636F7250);  // 'Proc'
            ulong header = p.Physical - (ulong)bodyOffset;
            PutBits(image, header, "_OBJECT_HEADER", "PointerCount", 1);
            PutBits(image, header, "_OBJECT_HEADER", "TypeIndex", 7);
            PutBits(image, header, "_OBJECT_HEADER", "InfoMask", 0x08);
            PutVa(p.Address + (ulong)pidOff, (ulong)p.Pid);
            PutVa(p.Address + (ulong)ppidOff, (ulong)p.Ppid);
            byte[] name = new byte[15];
            Encoding.ASCII.GetBytes(p.ImageFileName).CopyTo(name, 0);
            PutBytesVa(p.Address + (ulong)nameOff, name);
            PutVa(p.Address + (ulong)timeOff, (ulong)p.CreateTime.ToFileTimeUtc());
            PutVa(p.Address + (ulong)dtbOff, p.Dtb);
            // Unlinked entries point at themselves (what RemoveEntryList leaves on a process taken off the list).
            PutVa(p.Address + (ulong)links, p.Address + (ulong)links);
            PutVa(p.Address + (ulong)links + 8, p.Address + (ulong)links);
        }
        for (int i = 0; i < laid.Count; i++)
        {
            WindowsLaidOutProcess p = laid[i];
            PutVa(p.Address + (ulong)pidOff, (ulong)p.Pid);
            PutVa(p.Address + (ulong)ppidOff, (ulong)p.Ppid);
            byte[] name = new byte[15];
            Encoding.ASCII.GetBytes(p.ImageFileName).CopyTo(name, 0);
            PutBytesVa(p.Address + (ulong)nameOff, name);
            PutVa(p.Address + (ulong)timeOff, (ulong)p.CreateTime.ToFileTimeUtc());
            PutVa(p.Address + (ulong)dtbOff, p.Dtb);
            ulong next = i + 1 < laid.Count ? laid[i + 1].Address + (ulong)links : headVa;
            ulong prev = i > 0 ? laid[i - 1].Address + (ulong)links : headVa;
            PutVa(p.Address + (ulong)links, next);
            PutVa(p.Address + (ulong)links + 8, prev);
        }
        Put(headPa, laid.Count > 0 ? laid[0].Address + (ulong)links : headVa);
        Put(headPa + 8, laid.Count > 0 ? laid[^1].Address + (ulong)links : headVa);

        // Every process's PML4 shares the kernel half (and has its own self-reference), as on Windows.
        foreach (ulong dtb in dtbs.Where(d => d != Dtb))
        {
            image.AsSpan((int)Dtb + 256 * 8, 256 * 8).CopyTo(image.AsSpan((int)dtb + 256 * 8));
            Put(dtb + (ulong)SelfRefIndex * 8, dtb | Present | Write | Accessed | Dirty | (1UL << 63));
        }
        return (image, new WindowsImageManifest(Dtb, SelfRefIndex, KernelBase, KernelPhysical, headVa, laid)
        {
            Unlinked = [.. all.Where((_, i) => processes[i].Unlinked)],
        });
    }
}
