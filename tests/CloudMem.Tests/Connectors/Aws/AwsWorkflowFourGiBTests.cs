using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using CloudMem.Connectors.Aws;
using CloudMem.Connectors.Core;
using CloudMem.Tests.Support;
using Xunit.Abstractions;

namespace CloudMem.Tests.Connectors.Aws;

/// <summary>
/// A 4 GiB capture through the Step Functions workflow's steps, driven as the state machine drives them (start,
/// snapshots, Wait + poll until the command ended, finalize until Captured), against s3rver, the EC2/SSM fake (the real
/// guest script, bash + curl, 64 MiB parts) and dynalite, with every step bounded by <see cref="Budget"/>: the stand-in
/// for Lambda's 15 minutes, scaled down. A finalize whose read-back would outlast the budget checkpoints and returns,
/// and the state machine runs it again (how many finalize invocations that takes depends on the machine's speed; the
/// checkpoint itself is pinned by AwsWorkflowTests). Each step's duration is written to the test output.
/// </summary>
public sealed class AwsWorkflowFourGiBTests(ITestOutputHelper output)
{
    /// <summary>Per step, as Lambda's 15 minutes are per invocation.</summary>
    private static readonly TimeSpan Budget = TimeSpan.FromSeconds(90);

    /// <summary>What finalize keeps after its checkpoint for saving, the open in place and the manifest.</summary>
    private static readonly TimeSpan Margin = TimeSpan.FromSeconds(25);

    /// <summary>The Wait state between polls (30 s in infra/aws/cloudmem-workflow.asl.json).</summary>
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(2);

    [SkippableFact]
    public async Task A_4_GiB_capture_completes_through_the_workflow_with_every_step_under_its_budget()
    {
        var source = new FourGiBLime(Fixture.Require("memory.raw"));
        // s3rver holds the 64 MiB parts and, while CompleteMultipartUpload copies them, the 4 GiB object too.
        long free = new DriveInfo(Path.GetTempPath()).AvailableFreeSpace;
        string tooSmall = $"the 4 GiB capture needs 9 GiB free in {Path.GetTempPath()} for s3rver; {free >> 20} MiB are";
        if (free < 9L << 30 && Environment.GetEnvironmentVariable("CLOUDMEM_REQUIRE_FIXTURES") == "1")
        {
            Assert.Fail(tooSmall);
        }
        Skip.If(free < 9L << 30, tooSmall);
        using var world = new AwsWorkflowTests.World(source.RawFile, memTotalBytes: source.MemoryBytes - (64L << 20))
        {
            StepBudget = Budget,
            CheckpointMargin = Margin,
            MinPartBytes = 64L << 20,
            CommandTimeout = TimeSpan.FromMinutes(15),
        };
        world.Harness.Fake.InstanceMemoryMiB = source.MemoryBytes >> 20;
        File.WriteAllText(world.Harness.ToolFile, source.ToolScript(world.Runs));
        // The expected digest, from the same byte sequence, computed here while the guest uploads.
        Task<string> expected = Task.Run(source.Sha256);
        var clock = Stopwatch.StartNew();
        var steps = new List<(string Step, TimeSpan Took, string Status)>();

        async Task<WorkflowResult> Step(string step)
        {
            var took = Stopwatch.StartNew();
            WorkflowResult result = await world.StepAsync(AwsWorkflowTests.Input(step));
            steps.Add((step, took.Elapsed, result.Status));
            output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{clock.Elapsed.TotalSeconds,7:F1} s  {step,-9} {took.Elapsed.TotalSeconds,6:F2} s  {result.Status}: {result.Reason}"));
            return result;
        }

        // Start -> AnythingToDo -> DiskSnapshots -> (WaitForGuest -> Poll -> GuestDone)* -> (Finalize -> Verified)* -> Captured.
        WorkflowResult started = await Step("start");
        Assert.Equal("Started", started.Status);
        Assert.False(started.Done);
        Assert.Equal("Snapshotted", (await Step("snapshots")).Status);
        WorkflowResult poll;
        int polls = 0;
        do
        {
            Assert.True(++polls < 600, "the guest command did not finish");
            await Task.Delay(Wait);
            poll = await Step("poll");
        }
        while (!poll.Done);
        Assert.Equal("Ready", poll.Status);
        WorkflowResult finalize;
        int finalizes = 0;
        do
        {
            Assert.True(++finalizes <= 20, "finalize did not finish in 20 invocations");
            finalize = await Step("finalize");
            Assert.Contains(finalize.Status, new[] { "Verifying", "Captured" });
        }
        while (finalize.Status != "Captured");
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"4 GiB capture: {clock.Elapsed.TotalSeconds:F1} s, {steps.Count} steps ({polls} polls, {finalizes} finalize), longest {steps.Max(s => s.Took).TotalSeconds:F2} s ({steps.MaxBy(s => s.Took).Step}), budget {Budget.TotalSeconds} s"));

        // Every step ended within the budget, as Lambda's 15 minutes demand.
        Assert.All(steps, s => Assert.True(s.Took < Budget, $"{s.Step} took {s.Took.TotalSeconds:F1} s, over the {Budget.TotalSeconds} s budget"));

        CustodyManifest manifest = CustodyManifest.Read(finalize.Manifest!);
        Assert.Equal(CustodyStatus.Completed, manifest.Status);
        EvidenceRecord evidence = Assert.Single(manifest.Evidence);
        Assert.True(evidence.Verified, evidence.Problem);
        Assert.Equal(source.Length, evidence.SizeBytes);
        // Hashed outside the guest (by range over the finalize steps) = the guest's = the source's.
        Assert.Equal(await expected, evidence.Sha256);
        Assert.Equal(evidence.Sha256, evidence.SourceSha256);
        Assert.Equal("LiME", evidence.OpenedAs);
        Assert.Null(evidence.LocalPath);
        // The read-back ranges tile the object, in order, each recorded with its time in the manifest.
        long next = 0;
        foreach (StepRecord read in manifest.Steps.Where(s => s.Action == "read back"))
        {
            output.WriteLine($"manifest {read.Time:HH:mm:ss.fff} read back: {read.Detail}");
            Assert.Contains($": bytes {next}-", read.Detail, StringComparison.Ordinal);
            string range = read.Detail.Split(": bytes ")[1].Split(' ')[0];
            next = long.Parse(range.Split('-')[1], CultureInfo.InvariantCulture) + 1;
        }
        Assert.Equal(source.Length, next);
        Assert.Equal(finalizes, manifest.Steps.Count(s => s.Action == "workflow" && s.Detail.StartsWith("finalize attempt ", StringComparison.Ordinal)));
        // The tool ran on the guest once, from one command; one upload, completed once.
        Assert.Single(File.ReadAllLines(world.Runs));
        Assert.Single(world.Harness.Fake.SendCommandBodies);
        Assert.Single(manifest.Steps, s => s.Action == "complete upload");
        Assert.Contains(manifest.Steps, s => s.Action == "guest report" && s.Detail.StartsWith($"{source.Length} bytes in 65 parts", StringComparison.Ordinal));

        // The bucket holds 4 GiB: removed at once (the emulator's directory goes with the world).
        string key = evidence.Uri[$"s3://{AwsHarness.Bucket}/".Length..];
        await world.Harness.Clients.S3.DeleteObjectAsync(AwsHarness.Bucket, key);
    }

    /// <summary>
    /// A 4 GiB LiME capture of real memory that is never stored: range A is the 256 MiB basic capture at physical 0,
    /// range B the same bytes 15 times from physical 1 GiB. The guest's stand-in tool writes it with printf and cat;
    /// the test hashes the same sequence.
    /// </summary>
    private sealed class FourGiBLime(string rawFile)
    {
        private const int Repeats = 15;
        private const long RangeB = 1L << 30;

        public string RawFile { get; } = rawFile;

        private long RawBytes { get; } = new FileInfo(rawFile).Length;

        public long MemoryBytes => RawBytes * (1 + Repeats);

        public long Length => 2 * 32 + MemoryBytes;

        private byte[] HeaderA => Header(0, RawBytes - 1);

        private byte[] HeaderB => Header(RangeB, RangeB + (Repeats * RawBytes) - 1);

        private static byte[] Header(long start, long end)
        {
            var header = new byte[32];
            BinaryPrimitives.WriteUInt32LittleEndian(header, 0x4C694D45);
            BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(4), 1);
            BinaryPrimitives.WriteInt64LittleEndian(header.AsSpan(8), start);
            BinaryPrimitives.WriteInt64LittleEndian(header.AsSpan(16), end);
            return header;
        }

        private static string Printf(byte[] bytes)
        {
            var text = new StringBuilder("printf '");
            foreach (byte b in bytes)
            {
                text.Append(CultureInfo.InvariantCulture, $"\\x{b:x2}");
            }
            return text.Append('\'').ToString();
        }

        /// <summary>The acquisition tool (writes the image to its argument, as avml does); each run appends to <paramref name="runs"/>.</summary>
        public string ToolScript(string runs)
            => $"#!/bin/bash\necho run >> '{runs}'\n{{ {Printf(HeaderA)}; cat '{RawFile}'; {Printf(HeaderB)}; for i in $(seq {Repeats}); do cat '{RawFile}'; done; }} > \"$1\"\n";

        public string Sha256()
        {
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            byte[] buffer = new byte[4 << 20];
            void AppendRaw()
            {
                using FileStream file = File.OpenRead(RawFile);
                int n;
                while ((n = file.Read(buffer)) > 0)
                {
                    hash.AppendData(buffer, 0, n);
                }
            }
            hash.AppendData(HeaderA);
            AppendRaw();
            hash.AppendData(HeaderB);
            for (int i = 0; i < Repeats; i++)
            {
                AppendRaw();
            }
            return Convert.ToHexStringLower(hash.GetHashAndReset());
        }
    }
}
