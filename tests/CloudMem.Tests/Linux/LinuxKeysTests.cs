using System.Text.Json;
using CloudMem.Engine.Linux;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;

namespace CloudMem.Tests.Linux;

/// <summary>linux.keys against the user and logon keys the rootkit variant adds to root's keyring (serials from add_key, owner and
/// permissions from /proc/keys, payloads from the build, all in truth.json); the clean captures hold only the kernel's own keyrings.</summary>
public sealed class LinuxKeysTests
{
    [SkippableFact]
    public void Every_planted_key_is_found_once_with_its_serial_description_owner_and_a_redacted_payload()
    {
        using RunMappedMemory memory = CaptureOpener.Open(Fixture.Require("memory.raw", "rootkit"));
        using JsonDocument truth = Fixture.Truth("rootkit");
        var planted = truth.RootElement.GetProperty("rootkit").GetProperty("keys").EnumerateArray().ToList();
        Assert.Equal(["logon", "user"], planted.Select(k => k.GetProperty("type").GetString()).Order());
        LinuxContext context = LinuxContext.Open(memory);

        var redacted = LinuxKeys.List(context);
        Assert.Empty(redacted.Notes);
        Assert.All(redacted.Rows, r => Assert.Null(r.Value));
        Assert.All(redacted.Rows, r => Assert.Null(r.Doubt));
        Assert.Equal(redacted.Rows.Count, redacted.Rows.Select(r => r.Serial).Distinct().Count());
        Assert.Equal(redacted.Rows.Select(r => r.Serial).Order(), redacted.Rows.Select(r => r.Serial)); // the tree is walked in serial order
        var full = LinuxKeys.List(context, reveal: true);
        foreach (JsonElement want in planted)
        {
            int serial = want.GetProperty("serial").GetInt32();
            string payload = want.GetProperty("payload").GetString()!;
            LinuxKey key = Assert.Single(redacted.Rows, r => r.Serial == serial);
            Assert.Equal((want.GetProperty("type").GetString()!, want.GetProperty("description").GetString()!, want.GetProperty("uid").GetInt32(), want.GetProperty("gid").GetInt32()),
                (key.Type, key.Description, key.Uid!.Value, key.Gid!.Value));
            Assert.Equal(Convert.ToUInt32(want.GetProperty("perm").GetString(), 16), key.Permissions);
            Assert.Equal((KeyState.Positive, payload.Length), (key.State!.Value, key.PayloadLength!.Value));
            Assert.Null(key.Expiry);
            Assert.Equal($"{payload[..4]}… ({payload.Length} chars)", key.Preview);
            Assert.DoesNotContain(payload[4..], key.Preview, StringComparison.Ordinal);
            Assert.Equal(payload, Assert.Single(full.Rows, r => r.Serial == serial).Value);
        }
        Assert.Single(redacted.Rows, r => r.Type == "user");
        Assert.Single(redacted.Rows, r => r.Type == "logon");
        // root's user keyring, which holds them
        Assert.Contains(redacted.Rows, r => (r.Type, r.Description) == ("keyring", "_uid.0"));
    }

    [SkippableTheory]
    [InlineData("basic", "memory.raw")]
    [InlineData("pti", "memory.elf")]
    public void The_clean_captures_hold_only_the_kernels_keyrings_and_its_signing_key(string variant, string file)
    {
        using RunMappedMemory memory = CaptureOpener.Open(Fixture.Require(file, variant));
        var report = LinuxKeys.List(LinuxContext.Open(memory));
        Assert.Empty(report.Notes);
        Assert.Contains(report.Rows, r => (r.Type, r.Description) == ("keyring", ".builtin_trusted_keys"));
        Assert.All(report.Rows, r => Assert.Contains(r.Type, new[] { "keyring", "asymmetric" }));
        Assert.All(report.Rows, r => Assert.Null(r.Preview));
        Assert.All(report.Rows, r => Assert.Null(r.Doubt));
    }
}
