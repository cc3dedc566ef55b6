namespace CloudMem.ImageBuilder;

/// <summary>
/// The VAD tree of a process: one pool allocation per user region (tag 'VadS' and an _MMVAD_SHORT for private memory,
/// 'Vad ' and an _MMVAD for image and mapped-file regions, whose Subsection -> ControlArea -> FilePointer
/// (_EX_FAST_REF) -> _FILE_OBJECT.FileName names the file), linked as a balanced binary search tree ordered by address:
/// Windows 8+ _EPROCESS.VadRoot is an _RTL_AVL_TREE (nodes are _MMVAD_SHORT.VadNode, an _RTL_BALANCED_NODE with
/// Left/Right/ParentValue); Windows 7's is an _MM_AVL_TABLE whose BalancedRoot sentinel holds the tree root as its
/// RightChild (nodes link through LeftChild/RightChild/u1.Parent). Also writes the kernel's MmProtectToValue table
/// (MM protection index to PAGE_* value) as a real kernel holds it. Control areas and file objects are shared per file
/// within one build, as the kernel shares one control area per file section.
/// </summary>
public sealed partial class WindowsImageBuilder
{
    /// <summary>MmProtectToValue: the PAGE_* value of each MM protection index (0..31: bit 3 NOCACHE, bit 4 GUARD, both WRITECOMBINE).</summary>
    public static readonly uint[] ProtectToValue = BuildProtectToValue();

    /// <summary>MM protection indices of the PAGE_* names the scenario uses.</summary>
    public static int MmProtection(string protection) => protection switch
    {
        "PAGE_NOACCESS" => 0,
        "PAGE_READONLY" => 1,
        "PAGE_EXECUTE" => 2,
        "PAGE_EXECUTE_READ" => 3,
        "PAGE_READWRITE" => 4,
        "PAGE_WRITECOPY" => 5,
        "PAGE_EXECUTE_READWRITE" => 6,
        "PAGE_EXECUTE_WRITECOPY" => 7,
        _ => throw new InvalidOperationException($"unknown protection {protection}"),
    };

    /// <summary>_MMVAD_FLAGS.VadType of an image section view (VadImageMap).</summary>
    public const int VadImageMap = 2;

    private readonly Dictionary<string, ulong> _controlAreas = new(StringComparer.Ordinal);
    private PhysicalImage? _controlAreasOf;
    private PhysicalImage? _protectTableOf;

    private static uint[] BuildProtectToValue()
    {
        uint[] basic = [0x01, 0x02, 0x10, 0x20, 0x04, 0x08, 0x40, 0x80];
        uint[] table = new uint[32];
        for (int i = 0; i < 32; i++)
        {
            uint modifier = (i >> 3) switch { 1 => 0x200u, 2 => 0x100u, 3 => 0x400u, _ => 0u };
            table[i] = (i & 7) == 0 ? 0x01 : basic[i & 7] | modifier;      // index 8, 16, 24: PAGE_NOACCESS
        }
        return table;
    }

    partial void LayOutVads(ProcessLayout process)
    {
        if (!ReferenceEquals(_controlAreasOf, _image))
        {
            _controlAreas.Clear();
            _controlAreasOf = _image;
        }
        WriteProtectTable();
        var regions = process.LaidOut.Regions.OrderBy(r => r.Start).ToList();
        foreach (LaidOutRegion region in regions)
        {
            region.Vad = AllocateVad(region);
        }
        bool win7 = !Has("_MMVAD_SHORT", "VadNode");
        if (win7)
        {
            ulong table = process.Eprocess + (ulong)Off("_EPROCESS", "VadRoot");
            // The sentinel's parent is itself; the tree hangs off its right child.
            PutKernel(table, "_MM_AVL_TABLE", "BalancedRoot.u1.Parent", table);
            ulong root = Link(regions, 0, regions.Count - 1, table, win7, out int height);
            PutKernel(table, "_MM_AVL_TABLE", "BalancedRoot.RightChild", root);
            PutKernel(table, "_MM_AVL_TABLE", "NumberGenericTableElements", (ulong)regions.Count);
            PutKernel(table, "_MM_AVL_TABLE", "DepthOfTree", (ulong)height);
        }
        else
        {
            ulong root = Link(regions, 0, regions.Count - 1, 0, win7, out _);
            PutKernel(process.Eprocess, "_EPROCESS", "VadRoot.Root", root);
            if (Has("_EPROCESS", "VadCount"))
            {
                PutKernel(process.Eprocess, "_EPROCESS", "VadCount", (ulong)regions.Count);
            }
        }
    }

    /// <summary>Links regions[lo..hi] (sorted) as a balanced subtree under <paramref name="parent"/>; returns its root node (0 when empty).</summary>
    private ulong Link(List<LaidOutRegion> regions, int lo, int hi, ulong parent, bool win7, out int height)
    {
        if (lo > hi)
        {
            height = 0;
            return 0;
        }
        int mid = lo + (hi - lo + 1) / 2;
        ulong node = regions[mid].Vad;
        ulong left = Link(regions, lo, mid - 1, node, win7, out int leftHeight);
        ulong right = Link(regions, mid + 1, hi, node, win7, out int rightHeight);
        height = Math.Max(leftHeight, rightHeight) + 1;
        ulong balance = (ulong)(rightHeight - leftHeight) & 3;   // -1, 0, +1 in the two low bits of the parent pointer
        if (win7)
        {
            PutKernel(node, "_MMVAD_SHORT", "LeftChild", left);
            PutKernel(node, "_MMVAD_SHORT", "RightChild", right);
            PutKernel(node, "_MMVAD_SHORT", "u1.Parent", parent | balance);
        }
        else
        {
            PutKernel(node, "_MMVAD_SHORT", "VadNode.Left", left);
            PutKernel(node, "_MMVAD_SHORT", "VadNode.Right", right);
            PutKernel(node, "_MMVAD_SHORT", "VadNode.ParentValue", parent | balance);
        }
        return node;
    }

    /// <summary>A pool allocation holding the VAD of <paramref name="region"/> with its range and flags; returns the node address.</summary>
    private ulong AllocateVad(LaidOutRegion region)
    {
        bool isPrivate = region.Kind == RegionKind.Private;
        ulong vad = isPrivate
            ? AllocatePool(Tag("VadS"), SizeOf("_MMVAD_SHORT"))
            : AllocatePool(Tag("Vad "), SizeOf("_MMVAD"));
        ulong startVpn = region.Start >> 12, endVpn = region.End >> 12;
        ulong pages = endVpn - startVpn + 1;
        PutKernel(vad, "_MMVAD_SHORT", "StartingVpn", Has("_MMVAD_SHORT", "StartingVpnHigh") ? startVpn & 0xFFFFFFFF : startVpn);
        PutKernel(vad, "_MMVAD_SHORT", "EndingVpn", Has("_MMVAD_SHORT", "StartingVpnHigh") ? endVpn & 0xFFFFFFFF : endVpn);
        if (Has("_MMVAD_SHORT", "StartingVpnHigh"))
        {
            PutKernel(vad, "_MMVAD_SHORT", "StartingVpnHigh", startVpn >> 32);
            PutKernel(vad, "_MMVAD_SHORT", "EndingVpnHigh", endVpn >> 32);
        }
        PutKernel(vad, "_MMVAD_SHORT", "u.VadFlags.Protection", (ulong)MmProtection(region.Protection));
        PutKernel(vad, "_MMVAD_SHORT", "u.VadFlags.PrivateMemory", isPrivate ? 1UL : 0);
        PutKernel(vad, "_MMVAD_SHORT", "u.VadFlags.VadType", region.Kind == RegionKind.Image ? VadImageMap : 0UL);
        // Private memory is committed (charged) page by page; views of sections are charged to the section.
        ulong commit = isPrivate ? pages : 0;
        string commitField = Has("_MMVAD_SHORT", "u1.VadFlags1.CommitCharge") ? "u1.VadFlags1.CommitCharge" : "u.VadFlags.CommitCharge";
        PutKernel(vad, "_MMVAD_SHORT", commitField, commit);
        string memCommit = Has("_MMVAD_SHORT", "u1.VadFlags1.MemCommit") ? "u1.VadFlags1.MemCommit" : "u.VadFlags.MemCommit";
        PutKernel(vad, "_MMVAD_SHORT", memCommit, isPrivate ? 1UL : 0);
        if (!isPrivate)
        {
            ulong subsection = ControlAreaSubsection(region.FileName ?? "", region.Kind == RegionKind.Image);
            PutKernel(vad, "_MMVAD", "Subsection", subsection);
        }
        return vad;
    }

    /// <summary>
    /// The first _SUBSECTION of the control area of <paramref name="fileName"/> ('MmCa' pool block: control area then
    /// subsection, as the kernel allocates them), with its _FILE_OBJECT; one per file per build.
    /// </summary>
    private ulong ControlAreaSubsection(string fileName, bool image)
    {
        if (_controlAreas.TryGetValue(fileName, out ulong known))
        {
            return known;
        }
        int controlSize = SizeOf("_CONTROL_AREA");
        ulong controlArea = AllocatePool(Tag("MmCa"), controlSize + SizeOf("_SUBSECTION"));
        ulong subsection = controlArea + (ulong)controlSize;
        ulong fileObject = AllocateKernel(SizeOf("_FILE_OBJECT"));
        PutKernel(fileObject, "_FILE_OBJECT", "Type", 5);                       // IO_TYPE_FILE
        PutKernel(fileObject, "_FILE_OBJECT", "Size", (ulong)SizeOf("_FILE_OBJECT"));
        PutKernelUnicodeString(fileObject + (ulong)Off("_FILE_OBJECT", "FileName"), fileName);
        PutKernel(controlArea, "_CONTROL_AREA", "FilePointer.Value", fileObject | 0x7);      // _EX_FAST_REF: low 4 bits are a reference count
        PutKernel(controlArea, "_CONTROL_AREA", "NumberOfSectionReferences", 1);
        PutKernel(controlArea, "_CONTROL_AREA", "NumberOfMappedViews", 1);
        PutKernel(controlArea, "_CONTROL_AREA", "u.Flags.File", 1);
        if (image)
        {
            PutKernel(controlArea, "_CONTROL_AREA", "u.Flags.Image", 1);
        }
        PutKernel(subsection, "_SUBSECTION", "ControlArea", controlArea);
        _controlAreas[fileName] = subsection;
        return subsection;
    }

    /// <summary>The kernel's MmProtectToValue array (32 ints), once per image.</summary>
    private void WriteProtectTable()
    {
        if (ReferenceEquals(_protectTableOf, _image) || !types.Symbols.TryGetValue("MmProtectToValue", out ulong rva))
        {
            return;
        }
        _protectTableOf = _image;
        for (int i = 0; i < ProtectToValue.Length; i++)
        {
            _image.Write32(Dtb, KernelBase + rva + (ulong)(i * 4), ProtectToValue[i]);
        }
    }

    /// <summary>A file cached through its data section (see <see cref="ScenarioCachedFile"/>).</summary>
    private LaidOutCachedFile LayOutCachedFile(ScenarioCachedFile f)
    {
        const int page = Page;
        if (f.Content.Length % page != 0)
        {
            throw new InvalidOperationException($"cached file {f.Name}: content is not a whole number of pages");
        }
        int pages = f.Content.Length / page;
        ulong file = AllocateObject(Tag("File"), "File", SizeOf("_FILE_OBJECT"));
        PutKernel(file, "_FILE_OBJECT", "Type", 5);
        PutKernel(file, "_FILE_OBJECT", "Size", (ulong)SizeOf("_FILE_OBJECT"));
        PutKernelUnicodeString(file + (ulong)Off("_FILE_OBJECT", "FileName"), f.Name);
        ulong pointers = AllocateKernel(SizeOf("_SECTION_OBJECT_POINTERS"));
        PutKernel(file, "_FILE_OBJECT", "SectionObjectPointer", pointers);
        int controlSize = SizeOf("_CONTROL_AREA");
        ulong controlArea = AllocatePool(Tag("MmCa"), controlSize + SizeOf("_SUBSECTION"));
        ulong subsection = controlArea + (ulong)controlSize;
        PutKernel(pointers, "_SECTION_OBJECT_POINTERS", "DataSectionObject", controlArea);
        PutKernel(controlArea, "_CONTROL_AREA", "FilePointer.Value", file | 0x7);
        PutKernel(controlArea, "_CONTROL_AREA", "u.Flags.File", 1);
        ulong ptes = AllocateKernel(pages * 8);
        PutKernel(subsection, "_SUBSECTION", "ControlArea", controlArea);
        PutKernel(subsection, "_SUBSECTION", "SubsectionBase", ptes);
        PutKernel(subsection, "_SUBSECTION", "PtesInSubsection", (ulong)pages);
        var missing = new List<long>();
        for (int i = 0; i < pages; i++)
        {
            ulong pte;
            if (f.MissingPages.Contains(i))
            {
                pte = (0x2C41UL << 32) | 0x80;                   // a pagefile PTE: not valid, not transition, read-write protection
                missing.Add((long)i * page);
            }
            else
            {
                ulong pa = _image.AllocData();
                f.Content.AsSpan(i * page, page).CopyTo(_image.Bytes.AsSpan(checked((int)pa)));
                pte = f.TransitionPages.Contains(i) ? pa | 0x880 : pa | 0x121;    // transition (bit 11, protection 4) or valid+accessed
            }
            _image.Write64(Dtb, ptes + (ulong)i * 8, pte);
        }
        return new LaidOutCachedFile(file, controlArea, f.Name, f.Content, missing);
    }
}
