using CloudMem.VmStateParsers.Codecs;

namespace CloudMem.Tests.Codecs;

/// <summary>Our LZO1X compressor's output decodes with our decoder (python-lzo is checked by tests/peers/swsusp-python-lzo.py).</summary>
public sealed class Lzo1xCompressorTests
{
    public static TheoryData<string> Inputs => ["empty", "one", "three", "four", "text", "zeros", "random", "far", "mixed"];

    private static byte[] Make(string kind)
    {
        var random = new Random(kind.Length);
        switch (kind)
        {
            case "empty": return [];
            case "one": return [42];
            case "three": return [1, 2, 3];
            case "four": return [1, 1, 1, 1];
            case "text": return System.Text.Encoding.ASCII.GetBytes(string.Concat(Enumerable.Repeat("the swap map page lists sectors; ", 300)));
            case "zeros": return new byte[131072];
            case "random":
            {
                byte[] data = new byte[70000];
                random.NextBytes(data);
                return data;
            }
            case "far":
            {
                // Repeats at distances above 2048, 16384 and 32768 (M3 and M4 matches).
                byte[] block = new byte[40000];
                random.NextBytes(block);
                return [.. block, .. block.AsSpan(0, 3000), .. block.AsSpan(10000, 5000), .. block];
            }
            default:
            {
                byte[] data = new byte[131072];
                for (int i = 0; i < data.Length; i++)
                {
                    data[i] = (i / 4096 % 3) switch { 0 => 0, 1 => (byte)random.Next(), _ => (byte)(i % 251) };
                }
                return data;
            }
        }
    }

    [Theory]
    [MemberData(nameof(Inputs))]
    public void Round_trips(string kind)
    {
        byte[] input = Make(kind);
        byte[] compressed = new byte[Lzo1xCompressor.MaxOutputLength(input.Length)];
        int length = Lzo1xCompressor.Compress(input, compressed);
        Assert.True(length <= Lzo1xCompressor.MaxOutputLength(input.Length));
        byte[] output = new byte[input.Length];
        Assert.Equal(input.Length, Lzo1x.Decompress(compressed.AsSpan(0, length), output));
        Assert.True(output.AsSpan().SequenceEqual(input));
        if (kind is "zeros" or "text")
        {
            Assert.True(length < input.Length / 20);
        }
    }
}
