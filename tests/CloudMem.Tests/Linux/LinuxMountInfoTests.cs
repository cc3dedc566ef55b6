using System.Text.Json;
using CloudMem.Engine.Linux;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;

namespace CloudMem.Tests.Linux;

/// <summary>linux.mountinfo from the image alone against /proc/PID/mountinfo as the guest printed it (rootkit variant: init's namespace
/// and the extra namespace its scenario creates with unshare -m).</summary>
public sealed class LinuxMountInfoTests
{
    // "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - TYPE SOURCE SUPEROPTIONS"
    private static (int Id, int Parent, string Device, string Root, string MountPoint, string Options, string Propagation, string Type, string Source, string Super)
        Parse(string line)
    {
        string[] f = line.Split(' ');
        int dash = Array.IndexOf(f, "-");
        return (int.Parse(f[0]), int.Parse(f[1]), f[2], f[3], f[4], f[5], string.Join(' ', f[6..dash]), f[dash + 1], f[dash + 2], f[dash + 3]);
    }

    private static void AssertNamespace(IEnumerable<JsonElement> expected, IReadOnlyList<LinuxMount> got)
    {
        var want = expected.Select(e => Parse(e.GetString()!)).ToList();
        Assert.Equal(want.Count, got.Count);
        foreach ((var w, LinuxMount g) in want.Zip(got))
        {
            Assert.Equal((w.Id, w.Parent, w.Device, w.Root, w.MountPoint, w.Options, w.Propagation, w.Type, w.Source),
                (g.MountId, g.ParentId, g.Device!, g.Root, g.MountPoint, g.Options, g.Propagation, g.FsType, g.Source));
            // The file system's own options (size=, mode=) are not rebuilt: only the generic ro/rw prefix is compared.
            Assert.Equal(w.Super.Split(',')[0], g.SuperOptions.Split(',')[0]);
            Assert.Null(g.Doubt);
        }
    }

    [SkippableFact]
    public void Both_mount_namespaces_of_the_rootkit_variant_equal_the_guests_mountinfo()
    {
        using RunMappedMemory memory = CaptureOpener.Open(Fixture.Require("memory.raw", "rootkit"));
        using JsonDocument truth = Fixture.Truth("rootkit");
        JsonElement ns = truth.RootElement.GetProperty("rootkit").GetProperty("mount_namespace");
        var report = LinuxMountInfo.Run(LinuxContext.Open(memory));
        Assert.Empty(report.Notes);
        uint Inum(string name) => uint.Parse(ns.GetProperty(name).GetString()!.TrimStart("mnt:[".ToCharArray()).TrimEnd(']'));
        uint init = Inum("init_ns"), extra = Inum("ns");
        AssertNamespace(ns.GetProperty("init_mountinfo").EnumerateArray(), report.Rows.Where(r => r.Namespace == init).ToList());
        AssertNamespace(ns.GetProperty("mountinfo").EnumerateArray(), report.Rows.Where(r => r.Namespace == extra).ToList());
        Assert.Equal(1, report.Rows.First(r => r.Namespace == extra).Pids);
        Assert.All(report.Rows, r => Assert.DoesNotContain("(deleted)", r.MountPoint, StringComparison.Ordinal));
    }

    [SkippableTheory]
    [InlineData("basic", "memory.raw")]
    [InlineData("pti", "memory.elf")]
    [InlineData("nokaslr-novmci", "memory.lime")]
    public void The_other_variants_have_the_same_init_mounts_as_the_rootkit_guest_printed(string variant, string file)
    {
        // Every variant boots the same /init (guest-init.sh), which mounts the same file systems; only the rootkit variant's truth has mountinfo.
        using JsonDocument truth = Fixture.Truth("rootkit");
        var want = truth.RootElement.GetProperty("rootkit").GetProperty("mount_namespace").GetProperty("init_mountinfo").EnumerateArray()
            .Select(e => Parse(e.GetString()!)).Select(w => (w.Id, w.Parent, w.MountPoint, w.Options, w.Type, w.Source)).ToList();
        using RunMappedMemory memory = CaptureOpener.Open(Fixture.Require(file, variant));
        LinuxContext context = LinuxContext.Open(memory);
        var report = LinuxMountInfo.Run(context);
        Assert.Empty(report.Notes);
        uint? init = report.Rows[0].Namespace;
        Assert.Equal(want, report.Rows.Where(r => r.Namespace == init).Select(g => (g.MountId, g.ParentId, g.MountPoint, g.Options, g.FsType, g.Source)));
        Assert.All(report.Rows, r => Assert.Null(r.Doubt));
    }
}
