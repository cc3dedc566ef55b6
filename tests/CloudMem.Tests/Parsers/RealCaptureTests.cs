using System.Buffers.Binary;
using CloudMem.Engine.Capture;
using CloudMem.Engine.Convert;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;
using CloudMem.VmStateParsers.Writing;

namespace CloudMem.Tests.Parsers;

/// <summary>
/// Every format of one real capture (a Debian 12 guest paused under QEMU, tests/fixtures/make-fixture.sh) must give
/// the bytes of QEMU's own raw pmemsave on every System RAM range of the guest's /proc/iomem.
/// </summary>
public sealed class RealCaptureTests
{
    public static TheoryData<string> Files() => new(Fixture.CaptureFiles);

    [SkippableTheory]
    [MemberData(nameof(Files))]
    public void Every_system_ram_byte_equals_qemu_raw(string file)
    {
        string path = Fixture.Require(file);
        using RunMappedMemory memory = CaptureOpener.Open(path);
        using RunMappedMemory raw = CaptureOpener.OpenAs(Fixture.Require("memory.raw"), "raw");
        byte[] a = new byte[1 << 20];
        byte[] b = new byte[1 << 20];
        ulong compared = 0;
        foreach ((ulong start, ulong end) in Fixture.SystemRam())
        {
            for (ulong pa = start; pa <= end; pa += (ulong)a.Length)
            {
                int count = (int)Math.Min((ulong)a.Length, end - pa + 1);
                Assert.Equal(count, raw.Read(pa, a.AsSpan(0, count)));
                int got = memory.Read(pa, b.AsSpan(0, count));
                if (file == "memory.avml" && got < count)
                {
                    // AVML leaves out all-zero 16 MiB blocks: the hole must be zero in the raw.
                    Assert.True(a.AsSpan(got, count - got).IndexOfAnyExcept((byte)0) < 0, $"AVML hole at 0x{pa + (ulong)got:X} is not zero in the raw");
                    b.AsSpan(got, count - got).Clear();
                    got = count;
                }
                Assert.Equal(count, got);
                Assert.True(a.AsSpan(0, count).SequenceEqual(b.AsSpan(0, count)), $"{file}: bytes differ in 0x{pa:X}+0x{count:X}");
                compared += (ulong)count;
            }
        }
        Assert.True(compared > 200UL << 20, $"compared only {compared} bytes");
        Assert.Equal(0, memory.DecodeFailures);
    }

    [SkippableTheory]
    [MemberData(nameof(Files))]
    public void Info_names_the_format_the_runs_and_the_kernel_banner(string file)
    {
        string path = Fixture.Require(file);
        using RunMappedMemory memory = CaptureOpener.Open(path);
        CaptureInfo info = CaptureInfo.Build(path, memory);
        string expected = file switch
        {
            "memory.elf" => "ELF core",
            "memory.lime" => "LiME",
            "memory.avml" => "AVML (version 2, Snappy framed)",
            _ when file.EndsWith(".flat", StringComparison.Ordinal) => "kdump (makedumpfile flattened)",
            _ => "kdump (makedumpfile compressed)",
        };
        Assert.Equal(expected, info.Format);
        Assert.NotEmpty(info.Runs);
        string truthBanner = Fixture.Truth().RootElement.GetProperty("kernel").GetProperty("version").GetString()!;
        Assert.Equal(truthBanner.TrimEnd('\n'), info.KernelBanner?.Text);
        if (file != "memory.lime" && file != "memory.avml")
        {
            Assert.NotNull(info.VmcoreInfo);
            Assert.NotEmpty(info.Cpus);
        }
    }

    [SkippableFact]
    public void Convert_to_raw_and_lime_round_trips()
    {
        string path = Fixture.Require("memory.kdump-snappy.flat");
        using var dir = new TempDir();
        using RunMappedMemory memory = CaptureOpener.Open(path);
        ConvertResult raw = CaptureConverter.Convert(path, memory, "raw", dir.File("out.raw"));
        Assert.True(raw.Verified);
        Assert.Equal((long)memory.MaxAddress, raw.OutputBytes);
        Assert.Equal(raw.Sha256, Sha256(dir.File("out.raw")));
        ConvertResult lime = CaptureConverter.Convert(path, memory, "lime", dir.File("out.lime"));
        Assert.Equal(lime.Sha256, Sha256(dir.File("out.lime")));
        using RunMappedMemory back = CaptureOpener.Open(dir.File("out.lime"));
        Assert.Equal(memory.TotalBytes(), back.TotalBytes());
        // Never overwrites, and leaves no partial file behind.
        Assert.Throws<ConvertException>(() => CaptureConverter.Convert(path, memory, "raw", dir.File("out.raw")));
        Assert.Equal(new[] { "out.lime", "out.raw" }, Directory.GetFileSystemEntries(dir.Path).Select(p => Path.GetFileName(p)).Order().ToArray());
    }

    private static string Sha256(string path)
    {
        using FileStream stream = File.OpenRead(path);
        return System.Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(stream));
    }

    /// <summary>How many bytes at the start of each file are headers (everything a parser must have before data).</summary>
    private static int HeaderLength(string file, byte[] head)
    {
        if (file.EndsWith(".elf", StringComparison.Ordinal))
        {
            long phoff = BinaryPrimitives.ReadInt64LittleEndian(head.AsSpan(0x20));
            int phnum = BinaryPrimitives.ReadUInt16LittleEndian(head.AsSpan(0x38));
            return (int)(phoff + phnum * 56);
        }
        if (file.EndsWith(".lime", StringComparison.Ordinal))
        {
            return 32;
        }
        if (file.EndsWith(".avml", StringComparison.Ordinal))
        {
            return 32 + 10 + 4 + 4 + 8;   // header, stream identifier, first chunk header, crc, preamble
        }
        if (file.EndsWith(".flat", StringComparison.Ordinal))
        {
            return 4096 + 16;
        }
        int block = BinaryPrimitives.ReadInt32LittleEndian(head.AsSpan(0x1AC));
        int sub = BinaryPrimitives.ReadInt32LittleEndian(head.AsSpan(0x1B0));
        int bitmaps = BinaryPrimitives.ReadInt32LittleEndian(head.AsSpan(0x1B4));
        return (1 + sub + bitmaps) * block;
    }

    [SkippableTheory]
    [MemberData(nameof(Files))]
    public void Every_prefix_of_the_headers_is_a_one_line_error(string file)
    {
        string path = Fixture.Require(file);
        byte[] head = new byte[256 * 1024];
        using (FileStream source = File.OpenRead(path))
        {
            head = head[..source.ReadAtLeast(head, head.Length, throwOnEndOfStream: false)];
        }
        int headerLength = Math.Min(HeaderLength(file, head), head.Length);
        using var dir = new TempDir();
        string prefix = dir.File("prefix");
        using (FileStream output = File.Create(prefix))
        {
            output.Write(head, 0, headerLength);
        }
        // Every length below 4 KiB, then every 61st byte (the headers of kdump files are over 100 KiB).
        int checkedCount = 0;
        for (int length = headerLength - 1; length >= 0; length -= length < 4096 ? 1 : 61)
        {
            using (var truncate = new FileStream(prefix, FileMode.Open, FileAccess.Write))
            {
                truncate.SetLength(length);
            }
            var e = Assert.Throws<DumpFormatException>(() => CaptureOpener.Open(prefix).Dispose());
            Assert.DoesNotContain('\n', e.Message);
            Assert.StartsWith(prefix + ": ", e.Message, StringComparison.Ordinal);
            checkedCount++;
        }
        Assert.Equal(headerLength < 4096 ? headerLength : checkedCount, checkedCount);
        Assert.True(checkedCount >= 32);
    }

    [SkippableTheory]
    [MemberData(nameof(Files))]
    public void Random_header_corruption_never_crashes(string file)
    {
        string path = Fixture.Require(file);
        byte[] head = new byte[64 * 1024];
        using (FileStream source = File.OpenRead(path))
        {
            head = head[..source.ReadAtLeast(head, head.Length, throwOnEndOfStream: false)];
        }
        using var dir = new TempDir();
        string copy = dir.File("mutant");
        File.Copy(path, copy);
        var random = new Random(file.GetHashCode(StringComparison.Ordinal) & 0x7FFF);
        int limit = Math.Min(head.Length, HeaderLength(file, head) + 64);
        byte[] page = new byte[4096];
        for (int i = 0; i < 60; i++)
        {
            byte[] mutant = (byte[])head.Clone();
            for (int flips = random.Next(1, 6); flips > 0; flips--)
            {
                int at = random.Next(0, limit);
                mutant[at] = random.Next(3) switch { 0 => 0xFF, 1 => 0, _ => (byte)random.Next(256) };
            }
            using (var output = new FileStream(copy, FileMode.Open, FileAccess.Write))
            {
                output.Write(mutant);
            }
            if (!CaptureOpener.TryOpen(copy, out RunMappedMemory? memory, out FormatError? error))
            {
                Assert.False(string.IsNullOrEmpty(error!.Problem));
                continue;
            }
            using (memory)
            {
                // Reads of a damaged capture return short counts, never throw.
                foreach (PhysicalRun run in memory!.Runs.Take(4))
                {
                    memory.Read(run.PhysicalAddress, page);
                    memory.Read(run.End - 100, page);
                }
            }
        }
    }
}
