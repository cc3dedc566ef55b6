using System.Text;
using Iced.Intel;

namespace CloudMem.Engine.Core;

/// <summary>How findings show memory to a person: hexdump lines and x86-64 disassembly (malfind on every OS).</summary>
public static class CodeView
{
    /// <summary>Hexdump lines: address, 16 bytes in hex, then the printable ASCII.</summary>
    public static IReadOnlyList<string> HexLines(ReadOnlySpan<byte> bytes, ulong address)
    {
        var lines = new List<string>();
        for (int i = 0; i < bytes.Length; i += 16)
        {
            ReadOnlySpan<byte> line = bytes.Slice(i, Math.Min(16, bytes.Length - i));
            var text = new StringBuilder();
            text.Append($"0x{address + (ulong)i:x12}  ");
            for (int j = 0; j < 16; j++)
            {
                text.Append(j < line.Length ? $"{line[j]:x2} " : "   ");
            }
            text.Append(' ');
            foreach (byte b in line)
            {
                text.Append(b is >= 0x20 and < 0x7F ? (char)b : '.');
            }
            lines.Add(text.ToString());
        }
        return lines;
    }

    /// <summary>Up to <paramref name="count"/> x86-64 instructions (Intel syntax), stopping at the first undecodable one.</summary>
    public static IReadOnlyList<string> Disassemble(ReadOnlySpan<byte> bytes, ulong address, int count)
    {
        var lines = new List<string>();
        if (bytes.IsEmpty)
        {
            return lines;
        }
        var decoder = Iced.Intel.Decoder.Create(64, new ByteArrayCodeReader(bytes.ToArray()), address);
        var formatter = new IntelFormatter();
        formatter.Options.HexPrefix = "0x";
        formatter.Options.HexSuffix = null;
        formatter.Options.SpaceAfterOperandSeparator = true;
        var output = new StringOutput();
        ulong end = address + (ulong)bytes.Length;
        while (lines.Count < count && decoder.IP < end)
        {
            decoder.Decode(out Instruction instruction);
            if (instruction.IsInvalid)
            {
                lines.Add($"0x{instruction.IP:x12}  (not an instruction, or cut at the end of the bytes read)");
                break;
            }
            formatter.Format(instruction, output);
            lines.Add($"0x{instruction.IP:x12}  {output.ToStringAndReset()}");
        }
        return lines;
    }
}
