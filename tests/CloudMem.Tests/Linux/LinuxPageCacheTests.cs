using System.Security.Cryptography;
using System.Text.Json;
using CloudMem.Engine.Core;
using CloudMem.Engine.Linux;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;

namespace CloudMem.Tests.Linux;

/// <summary>linux.pagecache.files and linux.pagecache.extract: files rebuilt from the page cache byte for byte (the guest's sha256 of the
/// deleted script and the tmpfs file; a memfd copy of busybox against busybox itself).</summary>
public sealed class LinuxPageCacheTests
{
    private static string Sha256(string path) => Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(path)));

    [SkippableFact]
    public void The_deleted_script_and_the_tmpfs_file_of_the_rootkit_variant_are_extracted_byte_identical()
    {
        using RunMappedMemory memory = CaptureOpener.Open(Fixture.Require("memory.raw", "rootkit"));
        using JsonDocument truth = Fixture.Truth("rootkit");
        JsonElement rk = truth.RootElement.GetProperty("rootkit");
        LinuxContext context = LinuxContext.Open(memory);
        var files = LinuxPageCache.Files(context);
        Assert.Empty(files.Notes);
        using var output = new TempDir();
        foreach ((JsonElement planted, bool deleted) in new[] { (rk.GetProperty("deleted_script"), true), (rk.GetProperty("tmpfs_file"), false) })
        {
            string path = planted.GetProperty("path").GetString()!;
            LinuxCachedFile file = Assert.Single(files.Rows, f => f.Path == (deleted ? path + " (deleted)" : path));
            Assert.Equal((deleted, "tmpfs", planted.GetProperty("size").GetInt64(), 1L), (file.Deleted, file.FileSystem, file.Size, file.CachedPages));
            Assert.Null(file.Doubt);
            var extracted = LinuxPageCache.Extract(context, file.Inode, output.Path);
            Assert.Empty(extracted.Notes);
            LinuxExtractedFile row = Assert.Single(extracted.Rows);
            Assert.Equal((DumpFiles.Written, "", 1L), (row.Result, row.MissingPages, row.PresentPages));
            Assert.Equal(planted.GetProperty("sha256").GetString(), row.Sha256);
            Assert.Equal(row.Sha256, Sha256(row.OutputFile!));
            Assert.Equal(planted.GetProperty("size").GetInt64(), new FileInfo(row.OutputFile!).Length);
            // Never overwritten: the second run says so and writes nothing.
            LinuxExtractedFile again = Assert.Single(LinuxPageCache.Extract(context, file.Inode, output.Path).Rows);
            Assert.Null(again.OutputFile);
            Assert.EndsWith("exists: not overwritten", again.Result, StringComparison.Ordinal);
        }
    }

    [SkippableTheory]
    [InlineData("basic", "memory.raw")]
    [InlineData("pti", "memory.elf")]
    public void A_memfd_copy_of_busybox_is_extracted_equal_to_busybox_across_hundreds_of_pages(string variant, string file)
    {
        using RunMappedMemory memory = CaptureOpener.Open(Fixture.Require(file, variant));
        LinuxContext context = LinuxContext.Open(memory);
        var files = LinuxPageCache.Files(context);
        Assert.Empty(files.Notes);
        Assert.All(files.Rows, f => Assert.Null(f.Doubt));
        Assert.Contains(files.Rows, f => f.Path == "/tmp/messages" && f.FileSystem == "tmpfs" && !f.Deleted && f.Size > 0);
        LinuxCachedFile busybox = Assert.Single(files.Rows, f => f.Path == "/bin/busybox");
        LinuxCachedFile memfd = Assert.Single(files.Rows, f => f.Path == "/memfd:fx-fileless (deleted)");
        Assert.True(memfd.Deleted);
        Assert.True(busybox.Size > 1 << 20);
        using var output = new TempDir();
        LinuxExtractedFile a = Assert.Single(LinuxPageCache.Extract(context, busybox.Inode, output.Path).Rows);
        LinuxExtractedFile b = Assert.Single(LinuxPageCache.Extract(context, memfd.Inode, output.Path).Rows);
        Assert.Equal((a.Pages, "", a.Pages), (a.PresentPages, a.MissingPages, busybox.CachedPages));
        Assert.Equal((b.Pages, ""), (b.PresentPages, b.MissingPages));
        Assert.Equal(a.Sha256, b.Sha256);
        Assert.True(File.ReadAllBytes(a.OutputFile!).AsSpan().StartsWith("\u007fELF"u8));
    }

    [SkippableFact]
    public void An_address_that_is_no_regular_files_inode_is_a_note()
    {
        using RunMappedMemory memory = CaptureOpener.Open(Fixture.Require("memory.raw"));
        using var output = new TempDir();
        var report = LinuxPageCache.Extract(LinuxContext.Open(memory), 0xFFFF888000001000, output.Path);
        Assert.Empty(report.Rows);
        Assert.Contains("not the inode of a regular file", Assert.Single(report.Notes), StringComparison.Ordinal);
        Assert.Empty(Directory.GetFiles(output.Path));
    }
}
