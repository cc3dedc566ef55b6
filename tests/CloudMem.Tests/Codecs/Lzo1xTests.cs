using System.Security.Cryptography;
using System.Text.Json;
using CloudMem.VmStateParsers.Codecs;

namespace CloudMem.Tests.Codecs;

/// <summary>
/// Tests for <see cref="Lzo1x"/>: recorded vectors from liblzo2 (TestData/lzo/vectors.json), hand-assembled
/// streams for each instruction form, and hostile inputs (truncations, corruptions, garbage).
/// </summary>
public sealed class Lzo1xTests
{
    private static readonly string VectorDirectory = Path.Combine(AppContext.BaseDirectory, "TestData", "lzo");

    private sealed record LzoVector(string File, int DecompressedLength, string Sha256, string Source);

    private static IReadOnlyList<LzoVector> LoadVectors()
    {
        string json = File.ReadAllText(Path.Combine(VectorDirectory, "vectors.json"));
        var vectors = JsonSerializer.Deserialize<List<LzoVector>>(json, new JsonSerializerOptions(JsonSerializerDefaults.Web));
        Assert.NotNull(vectors);
        return vectors;
    }

    private static LzoVector Vector(string file) => LoadVectors().Single(v => v.File == file);

    private static byte[] Compressed(LzoVector vector) => File.ReadAllBytes(Path.Combine(VectorDirectory, vector.File));

    public static TheoryData<string> VectorFiles()
    {
        var data = new TheoryData<string>();
        foreach (var vector in LoadVectors())
        {
            data.Add(vector.File);
        }

        return data;
    }

    [Fact]
    public void VectorSet_IsPresent()
    {
        var vectors = LoadVectors();
        Assert.True(vectors.Count >= 5, $"expected at least 5 vectors, found {vectors.Count}");
        foreach (var vector in vectors)
        {
            Assert.True(File.Exists(Path.Combine(VectorDirectory, vector.File)), vector.File);
        }
    }

    [Theory]
    [MemberData(nameof(VectorFiles))]
    public void Vector_DecodesToRecordedSha256(string file)
    {
        var vector = Vector(file);
        byte[] compressed = Compressed(vector);

        byte[] exact = new byte[vector.DecompressedLength];
        Assert.Equal(vector.DecompressedLength, Lzo1x.Decompress(compressed, exact));
        Assert.Equal(vector.Sha256, Convert.ToHexStringLower(SHA256.HashData(exact)));

        // A larger destination gives the same result and its tail is left untouched.
        byte[] roomy = new byte[vector.DecompressedLength + 64];
        roomy.AsSpan().Fill(0xCC);
        Assert.Equal(vector.DecompressedLength, Lzo1x.Decompress(compressed, roomy));
        Assert.True(roomy.AsSpan(0, vector.DecompressedLength).SequenceEqual(exact));
        Assert.False(roomy.AsSpan(vector.DecompressedLength).ContainsAnyExcept((byte)0xCC));
    }

    [Theory]
    [MemberData(nameof(VectorFiles))]
    public void Vector_DestinationTooSmall_ReturnsMinusOne(string file)
    {
        var vector = Vector(file);
        if (vector.DecompressedLength == 0)
        {
            return;
        }

        byte[] compressed = Compressed(vector);
        Assert.Equal(-1, Lzo1x.Decompress(compressed, new byte[vector.DecompressedLength - 1]));
        Assert.Equal(-1, Lzo1x.Decompress(compressed, new byte[vector.DecompressedLength / 2]));
        Assert.Equal(-1, Lzo1x.Decompress(compressed, Span<byte>.Empty));
    }

    [Theory]
    [MemberData(nameof(VectorFiles))]
    public void Vector_EveryTruncation_ReturnsMinusOne(string file)
    {
        var vector = Vector(file);
        byte[] compressed = Compressed(vector);
        byte[] destination = new byte[vector.DecompressedLength];
        for (int cut = 0; cut < compressed.Length; cut++)
        {
            int result = Lzo1x.Decompress(compressed.AsSpan(0, cut), destination);
            Assert.True(result == -1, $"{file}: prefix of {cut}/{compressed.Length} bytes returned {result}");
        }
    }

    [Theory]
    [MemberData(nameof(VectorFiles))]
    public void Vector_BytesAfterEndMarker_AreIgnored(string file)
    {
        var vector = Vector(file);
        byte[] compressed = Compressed(vector);
        if (compressed[0] == 17)
        {
            // A stream of five or more bytes starting with 17 reads as the kernel's versioned (lzo-rle) form.
            return;
        }

        byte[] padded = [.. compressed, 0xAB, 0x00, 0x11, 0x00];
        Assert.Equal(vector.DecompressedLength, Lzo1x.Decompress(padded, new byte[vector.DecompressedLength]));
    }

    [Theory]
    [MemberData(nameof(VectorFiles))]
    public void Vector_Corrupted_NeverThrowsAndStaysInBounds(string file)
    {
        var vector = Vector(file);
        byte[] original = Compressed(vector);
        var random = new Random(file.Length * 7919);
        byte[] destination = new byte[vector.DecompressedLength + 16];
        for (int round = 0; round < 2000; round++)
        {
            byte[] corrupted = (byte[])original.Clone();
            int edits = random.Next(1, 4);
            for (int e = 0; e < edits; e++)
            {
                int at = random.Next(corrupted.Length);
                corrupted[at] = (round & 1) == 0 ? (byte)random.Next(256) : (byte)(corrupted[at] ^ (1 << random.Next(8)));
            }

            int length = random.Next(destination.Length + 1);
            int result = Lzo1x.Decompress(corrupted, destination.AsSpan(0, length));
            Assert.InRange(result, -1, length);
        }
    }

    [Fact]
    public void RandomGarbage_NeverThrowsAndStaysInBounds()
    {
        var random = new Random(20240601);
        byte[] input = new byte[512];
        byte[] destination = new byte[8192];
        for (int round = 0; round < 50_000; round++)
        {
            int inputLength = random.Next(input.Length + 1);
            random.NextBytes(input.AsSpan(0, inputLength));
            if (inputLength > 0 && (round & 1) == 0)
            {
                input[0] = (byte)random.Next(32); // bias towards opcodes that start with literals or long matches
            }

            int length = random.Next(destination.Length + 1);
            int result = Lzo1x.Decompress(input.AsSpan(0, inputLength), destination.AsSpan(0, length));
            Assert.InRange(result, -1, length);
        }
    }

    [Theory]
    // End marker only.
    [InlineData("110000", "")]
    // First byte 21: four literals.
    [InlineData("1541424344110000", "41424344")]
    // First byte 19: two literals (state 2), then a 2-byte match at distance 2 with one trailing literal.
    [InlineData("134142050043110000", "4142414243")]
    // 8-byte match at distance 1 (overlapping, M2 form LLLDDDSS).
    [InlineData("1541424344E000110000", "414243444444444444444444")]
    // M3 form 001LLLLL: 3 bytes at distance 4.
    [InlineData("1541424344210C00110000", "41424344414243")]
    // Input after the end marker is ignored.
    [InlineData("1541424344210C00110000FFFF", "41424344414243")]
    // Kernel bitstream header 17, version 0: plain LZO1X follows.
    [InlineData("11001541424344110000", "41424344")]
    // Kernel lzo-rle (version 1): zero run of ((1 << 3) | 3) + 4 = 15 bytes, then two trailing literals.
    [InlineData("11011541424344" + "1BFEFF01" + "5859" + "110000", "41424344" + "000000000000000000000000000000" + "5859")]
    // Without the version header the same instruction is a 49151-byte look-behind: invalid.
    [InlineData("1541424344" + "1BFEFF01" + "5859" + "110000", null)]
    // Look-behind before the start of the output (M3 at distance 5 after 4 bytes).
    [InlineData("15414243442110001100 00", null)]
    // First byte 16: a long-distance match with nothing to copy from yet.
    [InlineData("10050040110000", null)]
    // Missing end marker, empty and too-short inputs.
    [InlineData("1541424344", null)]
    [InlineData("", null)]
    [InlineData("1100", null)]
    // Extended literal length running off the end of the input.
    [InlineData("0000000000", null)]
    public void HandAssembledStream_DecodesAsSpecified(string streamHex, string? expectedHex)
    {
        byte[] stream = Convert.FromHexString(streamHex.Replace(" ", string.Empty, StringComparison.Ordinal));
        byte[] destination = new byte[256];
        int result = Lzo1x.Decompress(stream, destination);
        if (expectedHex is null)
        {
            Assert.Equal(-1, result);
        }
        else
        {
            Assert.Equal(expectedHex, Convert.ToHexString(destination, 0, Math.Max(result, 0)));
        }
    }

    [Fact]
    public void LongLiteralRun_ThenShortMatchAfterLiterals_Decodes()
    {
        // Opcode 0 with extension: 18 + 8 * 255 + 42 = 2100 literals; then, right after a literal run, the short
        // form 0000DDSS H copies 3 bytes from distance 2049 + D + 4 * H = 2100 (D = 3, H = 12), i.e. from offset 0.
        byte[] literals = new byte[2100];
        new Random(5).NextBytes(literals);
        var stream = new List<byte> { 0x00 };
        stream.AddRange(new byte[8]);
        stream.Add(42);
        stream.AddRange(literals);
        stream.AddRange([0x0C, 0x0C, 0x11, 0x00, 0x00]);

        byte[] destination = new byte[2103];
        Assert.Equal(2103, Lzo1x.Decompress(stream.ToArray(), destination));
        Assert.True(destination.AsSpan(0, 2100).SequenceEqual(literals));
        Assert.True(destination.AsSpan(2100).SequenceEqual(literals.AsSpan(0, 3)));

        Assert.Equal(-1, Lzo1x.Decompress(stream.ToArray(), new byte[2102]));
    }

    [Fact]
    public void HugeExtendedLength_ReturnsMinusOne()
    {
        // A literal-run length extended by 100000 zero bytes (about 25 MB) cannot fit the destination.
        byte[] stream = new byte[100_003];
        stream[^2] = 0xFF;
        Assert.Equal(-1, Lzo1x.Decompress(stream, new byte[4096]));

        // The same for a long M3 match after a few literals.
        byte[] match = new byte[100_010];
        match[0] = 0x15;
        match[5] = 0x20;
        match[^3] = 0x01;
        Assert.Equal(-1, Lzo1x.Decompress(match, new byte[4096]));
    }
}
