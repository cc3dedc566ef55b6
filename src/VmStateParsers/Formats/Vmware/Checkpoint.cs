using System.Buffers.Binary;
using System.Text;
using CloudMem.VmStateParsers.IO;

namespace CloudMem.VmStateParsers.Formats.Vmware;

/// <summary>One group descriptor and what its tag walk found.</summary>
internal sealed record CheckpointGroup(string Name, long DescriptorOffset, long Position, long Size, int TagCount);

/// <summary>
/// One tag. For an inline value <see cref="ValueOffset"/>/<see cref="ValueSize"/> are the value's bytes; for a
/// block they are the data (after the padding) and its stored size.
/// </summary>
internal sealed record CheckpointTag(
    string Group, string Name, uint[] Indices, long Offset, long ValueOffset, ulong ValueSize,
    bool IsBlock, bool Compressed, ulong MemSize, int Padding)
{
    /// <summary>The tag as VMware names it, e.g. regionPPN[1].</summary>
    public string Label => Indices.Length == 0 ? Name : $"{Name}[{string.Join("][", Indices)}]";

    public bool Is(string name, params uint[] indices) => Name == name && Indices.AsSpan().SequenceEqual(indices);
}

/// <summary>
/// Reads the group/tag structure of a checkpoint file. Every group's tag area must lie inside the file and every
/// tag inside its group's area; the walk is bounded by <see cref="ParserLimits"/>. Tags of the groups a parser
/// needs (<c>memory</c>, <c>cpu</c>) are kept; the others are only counted.
/// </summary>
internal sealed class Checkpoint
{
    public const string FormatName = "VMware";
    private static readonly string[] s_keptGroups = [VmwareLayout.MemoryGroup, VmwareLayout.CpuGroup];

    private Checkpoint(uint magic, uint version, List<CheckpointGroup> groups, List<CheckpointTag> tags)
    {
        Magic = magic;
        Version = version;
        Groups = groups;
        Tags = tags;
    }

    private Dictionary<string, CheckpointTag>? _index;

    public uint Magic { get; }
    public uint Version { get; }
    public int SizeWidth => VmwareLayout.SizeFieldWidth(Magic);
    public IReadOnlyList<CheckpointGroup> Groups { get; }
    public IReadOnlyList<CheckpointTag> Tags { get; }

    /// <summary>True when <paramref name="head"/> starts with a checkpoint magic and a whole header.</summary>
    public static bool HasMagic(ReadOnlySpan<byte> head)
        => head.Length >= 4 && VmwareLayout.MagicName(BinaryPrimitives.ReadUInt32LittleEndian(head)) is not null;

    /// <summary>Parses the header, group table and tags.</summary>
    /// <exception cref="FormatErrorException">on any structural problem, with its file offset.</exception>
    public static Checkpoint Read(IByteSource file, ParserLimits limits)
    {
        var header = new FieldReader(file.Span(0, (int)Math.Min(file.Length, VmwareLayout.HeaderSize)), 0, FormatName, "header");
        uint magic = header.U32(VmwareLayout.MagicOffset, "magic");
        if (VmwareLayout.MagicName(magic) is null)
        {
            throw header.Fail("magic", VmwareLayout.MagicOffset, $"0x{magic:X8} is not a VMware checkpoint magic");
        }
        uint version = header.U32(VmwareLayout.VersionOffset, "version");
        uint count = header.U32(VmwareLayout.NumGroupsOffset, "numGroups");
        if (count == 0)
        {
            throw header.Fail("numGroups", VmwareLayout.NumGroupsOffset, "no groups");
        }
        if (count > (uint)limits.MaxCheckpointGroups)
        {
            throw header.Fail("numGroups", VmwareLayout.NumGroupsOffset, $"{count} groups is more than {limits.MaxCheckpointGroups} (ParserLimits.MaxCheckpointGroups)");
        }
        long tableEnd = VmwareLayout.HeaderSize + (long)count * VmwareLayout.GroupSize;
        if (tableEnd > file.Length)
        {
            throw header.Fail("numGroups", VmwareLayout.NumGroupsOffset, $"{count} group descriptors end at 0x{tableEnd:X}, past the end of the file (0x{file.Length:X})");
        }
        int width = VmwareLayout.SizeFieldWidth(magic);
        var groups = new List<CheckpointGroup>((int)count);
        var tags = new List<CheckpointTag>();
        long walked = 0;
        for (int g = 0; g < count; g++)
        {
            long at = VmwareLayout.HeaderSize + (long)g * VmwareLayout.GroupSize;
            var descriptor = new FieldReader(file.Span(at, VmwareLayout.GroupSize), at, FormatName, $"groups[{g}]");
            string name = descriptor.FixedString(VmwareLayout.GroupNameOffset, VmwareLayout.GroupNameLength, "name");
            ulong position = descriptor.U64(VmwareLayout.GroupPositionOffset, "position");
            ulong size = descriptor.U64(VmwareLayout.GroupSizeOffset, "size");
            if (position < (ulong)tableEnd || position > (ulong)file.Length)
            {
                throw descriptor.Fail("position", VmwareLayout.GroupPositionOffset, $"group '{name}' starts at 0x{position:X}, outside the file's tag space [0x{tableEnd:X}, 0x{file.Length:X}]");
            }
            if (size > (ulong)file.Length - position)
            {
                throw descriptor.Fail("size", VmwareLayout.GroupSizeOffset, $"group '{name}' of 0x{size:X} bytes at 0x{position:X} ends past the end of the file (0x{file.Length:X})");
            }
            bool keep = Array.IndexOf(s_keptGroups, name) >= 0;
            int tagCount = WalkTags(file, name, (long)position, (long)(position + size), width, keep ? tags : null, limits, ref walked);
            groups.Add(new CheckpointGroup(name, at, (long)position, (long)size, tagCount));
        }
        return new Checkpoint(magic, version, groups, tags);
    }

    private static int WalkTags(IByteSource file, string group, long start, long end, int width, List<CheckpointTag>? keep, ParserLimits limits, ref long walked)
    {
        long offset = start;
        int index = 0;
        while (offset < end)
        {
            string structure = $"group '{group}' tag[{index}]";
            var tag = new FieldReader(file.Span(offset, (int)Math.Min(end - offset, VmwareLayout.MaxTagHead)), offset, FormatName, structure);
            ushort word = tag.U16(0, "word");
            if (word == 0)
            {
                return index;
            }
            if (++walked > limits.MaxCheckpointTags)
            {
                throw tag.Fail("word", 0, $"more than {limits.MaxCheckpointTags} tags (ParserLimits.MaxCheckpointTags)");
            }
            int valueSize = word & VmwareLayout.TagValueSizeMask;
            int indexCount = (word >> VmwareLayout.TagIndexCountShift) & VmwareLayout.TagIndexCountMask;
            int nameLength = word >> VmwareLayout.TagNameLengthShift;
            string name = Encoding.ASCII.GetString(tag.Bytes(VmwareLayout.TagWordSize, nameLength, "name"));
            int cursor = VmwareLayout.TagWordSize + nameLength;
            uint[] indices = new uint[indexCount];
            for (int i = 0; i < indexCount; i++)
            {
                indices[i] = tag.U32(cursor, $"index[{i}]");
                cursor += VmwareLayout.IndexSize;
            }
            CheckpointTag parsed;
            if (valueSize is VmwareLayout.Block or VmwareLayout.BlockCompressed)
            {
                ulong diskSize = width == 8 ? tag.U64(cursor, "diskSize") : tag.U32(cursor, "diskSize");
                ulong memSize = width == 8 ? tag.U64(cursor + width, "memSize") : tag.U32(cursor + width, "memSize");
                int padding = tag.U16(cursor + 2 * width, "padLen");
                long data = offset + cursor + 2 * width + VmwareLayout.BlockPadLengthSize + padding;
                if (data > end || diskSize > (ulong)(end - data))
                {
                    throw tag.Fail("diskSize", cursor, $"block {name} of 0x{diskSize:X} bytes (after {padding} bytes of padding) ends past its group, which ends at 0x{end:X}");
                }
                parsed = new CheckpointTag(group, name, indices, offset, data, diskSize, true, valueSize == VmwareLayout.BlockCompressed, memSize, padding);
                offset = data + (long)diskSize;
            }
            else
            {
                tag.Bytes(cursor, valueSize, "value");
                parsed = new CheckpointTag(group, name, indices, offset, offset + cursor, (ulong)valueSize, false, false, (ulong)valueSize, 0);
                offset += cursor + valueSize;
            }
            keep?.Add(parsed);
            index++;
        }
        // The area ended without a zero tag: accepted, the group's size bounds it.
        return index;
    }

    /// <summary>Reads an inline tag's value as a little-endian unsigned integer (1 to 8 bytes).</summary>
    public static ulong Integer(IByteSource file, CheckpointTag tag)
    {
        if (tag.IsBlock || tag.ValueSize is 0 or > 8)
        {
            throw Fail.At(FormatName, $"group '{tag.Group}' {tag.Label}", tag.Offset,
                tag.IsBlock ? "is a block, an integer was expected" : $"value of {tag.ValueSize} bytes is not an integer of 1 to 8 bytes");
        }
        Span<byte> value = stackalloc byte[8];
        value.Clear();
        file.Span(tag.ValueOffset, (int)tag.ValueSize).CopyTo(value);
        return BinaryPrimitives.ReadUInt64LittleEndian(value);
    }

    /// <summary>The first kept tag of <paramref name="group"/> with this name and these indices, or null.</summary>
    public CheckpointTag? Find(string group, string name, params uint[] indices)
    {
        if (_index is null)
        {
            var index = new Dictionary<string, CheckpointTag>(StringComparer.Ordinal);
            foreach (CheckpointTag tag in Tags)
            {
                index.TryAdd(tag.Group + "/" + tag.Label, tag);
            }
            _index = index;
        }
        string label = indices.Length == 0 ? name : $"{name}[{string.Join("][", indices)}]";
        return _index.GetValueOrDefault(group + "/" + label);
    }
}
