namespace CloudMem.VmStateParsers.Formats.HyperV;

/// <summary>One key of the container's tree.</summary>
internal sealed class HyperVKey
{
    public required string Name { get; init; }
    public required byte RawType { get; init; }
    public required byte Flags { get; init; }
    public required ushort Table { get; init; }
    public required uint OffsetInTable { get; init; }
    public required long EntryFileOffset { get; init; }
    public required uint InsertionSequence { get; init; }
    public required ushort ParentTable { get; init; }
    public required uint ParentOffset { get; init; }

    /// <summary>File offset of the value bytes (after the u32 size prefix of strings and arrays).</summary>
    public required long ValueOffset { get; init; }

    /// <summary>Length of the value bytes.</summary>
    public required long ValueLength { get; init; }

    /// <summary>The value lives in a file object (<see cref="ValueOffset"/> is then that object's offset).</summary>
    public bool InFileObject => (Flags & HyperVLayout.KeyFlagFileObject) != 0;

    /// <summary>False when a file-object value reaches past the end of the file.</summary>
    public bool ValueInFile { get; set; } = true;

    public HyperVKeyType Type => (HyperVKeyType)RawType;
    public HyperVKey? Parent { get; set; }
    public List<HyperVKey>? Children { get; set; }
    public string Path { get; set; } = "";
    public int Depth { get; set; }
}
