using System.Buffers.Binary;
using System.Text.Json;
using CloudMem.Engine.Linux;
using CloudMem.Engine.Paging;
using CloudMem.Engine.Plugins;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;

namespace CloudMem.Tests.Linux;

/// <summary>linux.procdump on the fixture's memfd and deleted executables.</summary>
public sealed class LinuxProcDumpTests
{
    private static int PidOf(JsonDocument truth, string exe) => truth.RootElement.GetProperty("processes").EnumerateArray()
        .Single(p => !p.GetProperty("kernel_thread").GetBoolean() && p.GetProperty("exe").GetString() == exe).GetProperty("pid").GetInt32();

    [SkippableFact]
    public void Deleted_and_memfd_executables_are_dumped_and_rebuilt()
    {
        using RunMappedMemory memory = CaptureOpener.Open(Fixture.Require("memory.raw"));
        LinuxContext context = LinuxContext.Open(memory);
        using JsonDocument truth = Fixture.Truth("basic");
        string dir = Directory.CreateTempSubdirectory("cloudmem-procdump-").FullName;
        try
        {
            foreach ((string exe, string elfName) in new[] { ("/tmp/fxdeleted (deleted)", "fxdeleted"), ("/memfd:fx-fileless (deleted)", "memfd_fx-fileless") })
            {
                int pid = PidOf(truth, exe);
                RowsReport<LinuxProcDumpRow> report = LinuxProcDump.Run(context, pid, dir);
                (List<LinuxMapping> maps, _) = LinuxMaps.List(context, new HashSet<int> { pid });
                Assert.Equal(maps.Count + 1, report.Rows.Count);
                foreach (LinuxMapping map in maps)
                {
                    LinuxProcDumpRow row = Assert.Single(report.Rows, r => r.Start == map.Start && r.File.EndsWith(".dmp", StringComparison.Ordinal));
                    Assert.Equal($"pid.{pid}.0x{map.Start:x8}-0x{map.End:x8}.", row.File[..$"pid.{pid}.0x{map.Start:x8}-0x{map.End:x8}.".Length]);
                    Assert.Equal(map.End - map.Start, row.Bytes);
                    Assert.Equal((long)row.Bytes, new FileInfo(Path.Combine(dir, row.File)).Length);
                    Assert.InRange(row.UnreadablePages, 0, (long)(row.Bytes / 4096));
                }
                LinuxProcDumpRow elf = Assert.Single(report.Rows, r => r.File.EndsWith(".elf", StringComparison.Ordinal));
                Assert.Equal($"pid.{pid}.{elfName}.elf", elf.File);
                Assert.Equal(exe, elf.Path);
                byte[] image = File.ReadAllBytes(Path.Combine(dir, elf.File));
                Assert.Equal((long)elf.Bytes, image.Length);
                Assert.Equal([0x7F, (byte)'E', (byte)'L', (byte)'F'], image[..4]);
                int compared = CompareExecutableSegment(context, pid, image);
                Assert.True(compared > 0, "no page of the executable segment was in memory to compare");
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>
    /// The executable PT_LOAD segment (which holds .text; the section headers themselves are not in memory) of the
    /// rebuilt file equals the process's memory at its virtual address, page by page where memory has the page.
    /// </summary>
    private static int CompareExecutableSegment(LinuxContext context, int pid, byte[] image)
    {
        ulong phoff = BinaryPrimitives.ReadUInt64LittleEndian(image.AsSpan(0x20));
        int phentsize = BinaryPrimitives.ReadUInt16LittleEndian(image.AsSpan(0x36));
        int phnum = BinaryPrimitives.ReadUInt16LittleEndian(image.AsSpan(0x38));
        AddressSpace space = LinuxMalfind.UserSpace(context, pid, default)!;
        int pages = 0;
        bool found = false;
        for (int i = 0; i < phnum; i++)
        {
            ReadOnlySpan<byte> ph = image.AsSpan((int)phoff + i * phentsize, phentsize);
            if (BinaryPrimitives.ReadUInt32LittleEndian(ph) != 1 || (BinaryPrimitives.ReadUInt32LittleEndian(ph[4..]) & 1) == 0)
            {
                continue;
            }
            found = true;
            ulong offset = BinaryPrimitives.ReadUInt64LittleEndian(ph[8..]);
            ulong vaddr = BinaryPrimitives.ReadUInt64LittleEndian(ph[16..]);
            ulong filesz = BinaryPrimitives.ReadUInt64LittleEndian(ph[32..]);
            Assert.True(offset + filesz <= (ulong)image.Length);
            byte[] page = new byte[4096];
            for (ulong at = 0; at < filesz; at += 4096)
            {
                int count = (int)Math.Min(4096, filesz - at);
                if (space.Read(vaddr + at, page.AsSpan(0, count)) != count)
                {
                    continue;
                }
                Assert.True(page.AsSpan(0, count).SequenceEqual(image.AsSpan((int)(offset + at), count)), $"pid {pid}: segment byte {at} differs");
                pages++;
            }
        }
        Assert.True(found, "no executable PT_LOAD");
        return pages;
    }

    [SkippableFact]
    public void Existing_files_are_never_overwritten_and_a_missing_directory_is_a_clear_error()
    {
        using RunMappedMemory memory = CaptureOpener.Open(Fixture.Require("memory.raw"));
        LinuxContext context = LinuxContext.Open(memory);
        using JsonDocument truth = Fixture.Truth("basic");
        int pid = PidOf(truth, "/tmp/fxdeleted (deleted)");
        string missing = Path.Combine(Path.GetTempPath(), "cloudmem-no-such-dir-" + Guid.NewGuid().ToString("N"));
        DirectoryNotFoundException e = Assert.Throws<DirectoryNotFoundException>(() => LinuxProcDump.Run(context, pid, missing));
        Assert.Contains(missing, e.Message, StringComparison.Ordinal);

        string dir = Directory.CreateTempSubdirectory("cloudmem-procdump-").FullName;
        try
        {
            RowsReport<LinuxProcDumpRow> first = LinuxProcDump.Run(context, pid, dir);
            string victim = Path.Combine(dir, first.Rows[0].File);
            Assert.All(first.Rows, r => Assert.Equal("written", r.Result));
            File.WriteAllText(victim, "keep me");
            // The same rule as windows.procdump: the existing file is that row's result, the others are written.
            RowsReport<LinuxProcDumpRow> second = LinuxProcDump.Run(context, pid, dir);
            Assert.Equal("keep me", File.ReadAllText(victim));
            Assert.Equal($"{first.Rows[0].File} exists: not overwritten", second.Rows[0].Result);
            Assert.Equal(first.Rows.Count, second.Rows.Count);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [SkippableFact]
    public void File_names_are_sanitised()
    {
        Assert.Equal("tmp_fxdeleted_deleted", LinuxProcDump.Sanitise("/tmp/fxdeleted (deleted)", "anon"));
        Assert.Equal("heap", LinuxProcDump.Sanitise("[heap]", "anon"));
        Assert.Equal("anon", LinuxProcDump.Sanitise("", "anon"));
        Assert.Equal("anon", LinuxProcDump.Sanitise("/../..", "anon"));
        Assert.Equal("memfd:fx-fileless", LinuxProcDump.ExecutableName("/memfd:fx-fileless (deleted)"));
    }
}
