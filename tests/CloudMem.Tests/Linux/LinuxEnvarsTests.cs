using System.Text.Json;
using CloudMem.Engine.Linux;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;

namespace CloudMem.Tests.Linux;

/// <summary>linux.envars against truth.json's processes[].environ (the guest's /proc/PID/environ).</summary>
public sealed class LinuxEnvarsTests
{
    public static TheoryData<string, string> Captures() => new()
    {
        { "basic", "memory.raw" },
        { "basic", "memory.lime" },
        { "nokaslr-novmci", "memory.kdump-zlib.flat" },
    };

    [SkippableTheory]
    [MemberData(nameof(Captures))]
    public void Every_variable_of_every_user_process_matches_truth(string variant, string file)
    {
        using RunMappedMemory memory = CaptureOpener.Open(Fixture.Require(file, variant));
        LinuxContext context = LinuxContext.Open(memory);
        (List<LinuxEnvVar> rows, List<string> notes) = LinuxEnvars.List(context);
        Assert.Empty(notes);
        var byPid = rows.GroupBy(r => r.Pid).ToDictionary(g => g.Key, g => g.Select(r => $"{r.Key}={r.Value}").ToList());
        using JsonDocument truth = Fixture.Truth(variant);
        int processes = 0, variables = 0;
        foreach (JsonElement expected in truth.RootElement.GetProperty("processes").EnumerateArray())
        {
            int pid = expected.GetProperty("pid").GetInt32();
            if (expected.GetProperty("kernel_thread").GetBoolean())
            {
                Assert.False(byPid.ContainsKey(pid), $"kernel thread {pid} has an environment");
                continue;
            }
            var environ = expected.GetProperty("environ").EnumerateArray().Select(e => e.GetString()!).ToList();
            Assert.Equal(environ, byPid.GetValueOrDefault(pid) ?? []);
            processes++;
            variables += environ.Count;
        }
        Assert.True(processes >= 10 && variables >= 50, $"only {processes} processes / {variables} variables compared");
        Assert.Equal(variables, rows.Count);
    }

    [SkippableFact]
    public void The_planted_cloud_key_is_found_in_the_process_that_had_it_only()
    {
        using RunMappedMemory memory = CaptureOpener.Open(Fixture.Require("memory.raw"));
        LinuxContext context = LinuxContext.Open(memory);
        using JsonDocument truth = Fixture.Truth();
        int owner = truth.RootElement.GetProperty("processes").EnumerateArray()
            .Single(p => p.TryGetProperty("environ", out JsonElement env) && env.EnumerateArray().Any(e => e.GetString() == "AWS_ACCESS_KEY_ID=AKIAFAKEACCESSKEY00000"))
            .GetProperty("pid").GetInt32();
        var rows = LinuxEnvars.Envars(context).Rows;
        LinuxEnvVar key = Assert.Single(rows, r => r.Key == "AWS_ACCESS_KEY_ID");
        Assert.Equal(owner, key.Pid);
        Assert.Equal("AKIAFAKEACCESSKEY00000", key.Value);
        Assert.Equal("fxhelper", key.Comm);
        // --pid filter.
        Assert.All(LinuxEnvars.Envars(context, new HashSet<int> { 1 }).Rows, r => Assert.Equal(1, r.Pid));
        Assert.Equal(["HOME=/", "TERM=linux"], LinuxEnvars.Envars(context, new HashSet<int> { 1 }).Rows.Select(r => $"{r.Key}={r.Value}"));
    }
}
