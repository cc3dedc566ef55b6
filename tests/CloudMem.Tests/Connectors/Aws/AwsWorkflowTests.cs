using System.Text.Json;
using Amazon.DynamoDBv2.Model;
using CloudMem.Connectors.Aws;
using CloudMem.Connectors.Core;
using CloudMem.Connectors.Triggers;
using CloudMem.Tests.Connectors.Triggers;
using CloudMem.Tests.Support;

namespace CloudMem.Tests.Connectors.Aws;

/// <summary>
/// The Step Functions workflow's Lambda steps (start, poll, finalize, fail) against s3rver, the EC2/SSM fake and
/// dynalite; each step runs in a fresh "sandbox" (new steps object, new clients), only the DynamoDB item carries over.
/// </summary>
public sealed class AwsWorkflowTests
{
    private const string Execution = "arn:aws:states:eu-west-1:123456789012:execution:cloudmem-capture:7f0e";

    internal static WorkflowInput Input(string step, string execution = Execution, string? error = null) => new()
    {
        Step = step,
        Event = JsonDocument.Parse(File.ReadAllText(AlertEventParserTests.Event("guardduty-eventbridge-high.json"))).RootElement.Clone(),
        Execution = execution,
        Error = error is null ? null : JsonDocument.Parse(error).RootElement.Clone(),
    };

    internal sealed class World : IDisposable
    {
        public World(string? fixture = null, long memTotalBytes = 200_000 * 1024L)
        {
            Harness = new AwsHarness(fixture ?? Fixture.Require("memory.lime"), memTotalBytes: memTotalBytes);
            Dynalite = new DynaliteEmulator();
            Runs = Path.Combine(Harness.OutputDirectory, "..", "tool-runs");
            File.WriteAllText(Harness.ToolFile, $"#!/bin/bash\necho run >> '{Runs}'\nexec cat '{Harness.Fixture}' > \"$1\"\n");
        }

        public AwsHarness Harness { get; }

        public DynaliteEmulator Dynalite { get; }

        public string Runs { get; }

        /// <summary>Each step's budget (the stand-in for Lambda's 15 minutes); null: none.</summary>
        public TimeSpan? StepBudget { get; set; }

        /// <summary>What finalize keeps of the budget after its read-back checkpoint.</summary>
        public TimeSpan CheckpointMargin { get; init; } = TimeSpan.FromMinutes(2);

        public long MinPartBytes { get; init; } = 8L << 20;

        public TimeSpan CommandTimeout { get; init; } = TimeSpan.FromMinutes(3);

        public TimeSpan ReadBackSaveEvery { get; init; } = TimeSpan.FromSeconds(30);

        /// <summary>One step in a fresh sandbox.</summary>
        public async Task<WorkflowResult> StepAsync(WorkflowInput input, S3EvidenceOpener? opener = null, Func<CancellationToken, Task>? beforeComplete = null, string? forensicAccount = null, bool diskSnapshots = true, Func<long, CancellationToken, Task>? afterReadBackPiece = null)
        {
            using DynamoCaptureLedger ledger = Dynalite.Ledger(Harness.Log);
            var steps = new AwsWorkflowSteps(new TriggerPolicy(), _ => Harness.Connection, ledger, AwsHarness.Bucket, "cases", Harness.ToolFile, opener ?? CloudMem.Cli.Commands.CaptureCli.S3InPlaceOpener, Harness.Log)
            {
                Timeouts = new CaptureTimeouts { Command = CommandTimeout, PollInterval = TimeSpan.FromMilliseconds(200), Operation = TimeSpan.FromMinutes(1) },
                OutputDirectory = Harness.OutputDirectory,
                MinPartBytes = MinPartBytes,
                StepBudget = StepBudget,
                CheckpointMargin = CheckpointMargin,
                BeforeComplete = beforeComplete,
                AfterReadBackPiece = afterReadBackPiece,
                ReadBackSaveEvery = ReadBackSaveEvery,
                ForensicAccount = forensicAccount,
                DiskSnapshots = diskSnapshots,
                // The stack's pinned documents, as infra/aws/cloudmem-responder.yaml configures the function.
                Documents = new SsmDocuments("cloudmem-capture-linux", "cloudmem-capture-windows", "1"),
            };
            return await steps.RunAsync(input, CancellationToken.None);
        }

        /// <summary>The variables `cloudmem lambda` / `workflow-step` read, for this world's emulators.</summary>
        public Dictionary<string, string> CliEnvironment()
        {
            Dictionary<string, string> environment = AwsCliTests.Environment(Harness);
            environment["AWS_ENDPOINT_URL_DYNAMODB"] = Dynalite.Url;
            environment["CLOUDMEM_BUCKET"] = AwsHarness.Bucket;
            environment["CLOUDMEM_PREFIX"] = "cases";
            environment["CLOUDMEM_TOOL_FILE"] = Harness.ToolFile;
            environment["CLOUDMEM_DEDUPE_TABLE"] = DynaliteEmulator.Table;
            environment["CLOUDMEM_MIN_PART_MIB"] = "8";
            environment["CLOUDMEM_OUT"] = Harness.OutputDirectory;
            return environment;
        }

        public async Task PollUntilDoneAsync()
        {
            for (int i = 0; i < 900; i++)
            {
                WorkflowResult poll = await StepAsync(Input("poll"));
                if (poll.Done)
                {
                    Assert.Equal("Ready", poll.Status);
                    return;
                }
                await Task.Delay(200);
            }
            Assert.Fail("the command did not finish");
        }

        public async Task<Dictionary<string, AttributeValue>> ItemAsync()
        {
            using DynamoCaptureLedger reader = Dynalite.Ledger(new CaptureLog(new SecretScrubber(), TextWriter.Null));
            return await reader.GetAsync("alert#guardduty:c4ab91f07e2d3b5a8c6d1e0f2a3b4c5d#i-0123456789abcdef0", CancellationToken.None);
        }

        public void Dispose()
        {
            Dynalite.Dispose();
            Harness.Dispose();
        }
    }

    [Fact]
    public void The_state_machine_loops_finalize_until_done_and_selects_only_fields_every_step_result_has()
    {
        using JsonDocument asl = JsonDocument.Parse(File.ReadAllText(Path.Combine(Fixture.RepoRoot, "infra", "aws", "cloudmem-workflow.asl.json")));
        JsonElement states = asl.RootElement.GetProperty("States");
        // A Verifying finalize (the read-back stopped at its checkpoint) has no manifest: a selector naming a field the
        // result lacks would fail the execution (States.Runtime), so every selected field must be written always.
        string verifying = new WorkflowResult { Status = "Verifying", Reason = "checkpoint" }.ToJson();
        using JsonDocument result = JsonDocument.Parse(verifying);
        foreach (JsonProperty state in states.EnumerateObject())
        {
            if (state.Value.TryGetProperty("ResultSelector", out JsonElement selector) && state.Value.GetProperty("Resource").GetString() == "arn:aws:states:::lambda:invoke")
            {
                foreach (JsonProperty field in selector.EnumerateObject())
                {
                    string path = field.Value.GetString()!;
                    Assert.StartsWith("$.Payload.", path, StringComparison.Ordinal);
                    Assert.True(result.RootElement.TryGetProperty(path["$.Payload.".Length..], out _), $"{state.Name} selects {path}, absent from {verifying}");
                }
            }
        }
        JsonElement finalize = states.GetProperty("Finalize");
        Assert.Equal("FinalizeDone", finalize.GetProperty("Next").GetString());
        JsonElement done = states.GetProperty("FinalizeDone");
        Assert.Equal("Finalize", done.GetProperty("Default").GetString());
        JsonElement choice = Assert.Single(done.GetProperty("Choices").EnumerateArray());
        Assert.Equal("$.finalize.done", choice.GetProperty("Variable").GetString());
        Assert.Equal("$.finalize", finalize.GetProperty("ResultPath").GetString());
        Assert.Equal("Captured", choice.GetProperty("Next").GetString());
    }

    [SkippableFact]
    public async Task The_snapshots_step_takes_every_volume_once_tagged_and_finalize_shares_them_with_the_forensic_account()
    {
        using var world = new World();
        world.Harness.Fake.ExtraVolumes.Add(("/dev/sdf", "vol-0data"));
        Assert.Equal("Started", (await world.StepAsync(Input("start"))).Status);
        Assert.Equal("Skipped", (await world.StepAsync(Input("snapshots"), diskSnapshots: false)).Status);
        Assert.DoesNotContain(world.Harness.Fake.Calls, c => c.Operation == "CreateSnapshot");

        WorkflowResult snapshotted = await world.StepAsync(Input("snapshots"));
        Assert.Equal("Snapshotted", snapshotted.Status);
        // A retried step (the state machine's Retry) snapshots nothing again: the ids were saved per volume.
        await world.StepAsync(Input("snapshots"));
        FakeCall[] creates = [.. world.Harness.Fake.Calls.Where(c => c.Operation == "CreateSnapshot")];
        Assert.Equal(["vol-0root", "vol-0data"], creates.Select(c => System.Web.HttpUtility.ParseQueryString(c.Body)["VolumeId"]));
        foreach (FakeCall create in creates)
        {
            var form = System.Web.HttpUtility.ParseQueryString(create.Body);
            var tags = Enumerable.Range(1, 4).ToDictionary(i => form[$"TagSpecification.1.Tag.{i}.Key"]!, i => form[$"TagSpecification.1.Tag.{i}.Value"]!);
            Assert.Equal("i-0123456789abcdef0", tags["cloudmem:instance"]);
            Assert.Equal("c4ab91f07e2d3b5a8c6d1e0f2a3b4c5d", tags["cloudmem:finding"]);
            Assert.Equal("snapshot", form["TagSpecification.1.ResourceType"]);
        }

        await world.PollUntilDoneAsync();
        world.Harness.Fake.PendingSnapshotPolls = 0;
        WorkflowResult captured = await world.StepAsync(Input("finalize"), forensicAccount: "210987654321");
        Assert.Equal("Captured", captured.Status);
        CustodyManifest manifest = CustodyManifest.Read(captured.Manifest!);
        ResourceRecord[] snapshots = [.. manifest.Resources.Where(r => r.Kind == "ebs-snapshot")];
        Assert.Equal(2, snapshots.Length);
        Assert.Contains(snapshots, r => r.Detail.StartsWith("volume vol-0root (/dev/xvda, root), 8 GiB, started 20", StringComparison.Ordinal));
        Assert.Contains(snapshots, r => r.Detail.StartsWith("volume vol-0data (/dev/sdf), 8 GiB", StringComparison.Ordinal));
        // Both completed by finalize: each shared with the forensic account (createVolumePermission add), recorded.
        string[] shared = [.. world.Harness.Fake.Calls.Where(c => c.Operation == "ModifySnapshotAttribute").Select(c => System.Web.HttpUtility.ParseQueryString(c.Body)["SnapshotId"]!)];
        Assert.Equal(snapshots.Select(r => r.Id).Order(), shared.Order());
        Assert.All(world.Harness.Fake.Calls.Where(c => c.Operation == "ModifySnapshotAttribute"), c => Assert.Contains("210987654321", c.Body));
        Assert.Equal(2, manifest.Resources.Count(r => r.Kind == "ebs-snapshot-share"));
    }

    [SkippableFact]
    public async Task A_finalize_step_stopped_mid_upload_resumes_the_same_upload_without_running_the_tool_again()
    {
        using var world = new World();

        WorkflowResult started = await world.StepAsync(Input("start"));
        Assert.Equal("Started", started.Status);
        Assert.NotNull(started.CommandId);
        Assert.NotNull(started.UploadId);
        // The state machine retries a start step that timed out after sending: nothing is sent or started again.
        WorkflowResult again = await world.StepAsync(Input("start"));
        Assert.Equal(started.CommandId, again.CommandId);
        Assert.Equal(started.UploadId, again.UploadId);
        await world.PollUntilDoneAsync();

        // Attempt 1 stops before CompleteMultipartUpload (the Lambda's deadline), attempt 2 after it, while verifying.
        await Assert.ThrowsAsync<OperationCanceledException>(() => world.StepAsync(Input("finalize"), beforeComplete: _ => throw new OperationCanceledException("step deadline")));
        await Assert.ThrowsAsync<OperationCanceledException>(() => world.StepAsync(Input("finalize"), opener: (_, _, _) => throw new OperationCanceledException("step deadline")));
        WorkflowResult captured = await world.StepAsync(Input("finalize"));

        Assert.Equal("Captured", captured.Status);
        Assert.Equal(started.UploadId, captured.UploadId);
        CustodyManifest manifest = CustodyManifest.Read(captured.Manifest!);
        Assert.Equal(CustodyStatus.Completed, manifest.Status);
        EvidenceRecord evidence = Assert.Single(manifest.Evidence);
        Assert.True(evidence.Verified);
        Assert.Equal(new FileInfo(world.Harness.Fixture).Length, evidence.SizeBytes);
        // One command, one tool run, one upload started and completed once: the same upload id throughout.
        using (JsonDocument send = JsonDocument.Parse(Assert.Single(world.Harness.Fake.SendCommandBodies)))
        {
            // Our own document at its pinned version, never AWS-RunShellScript.
            Assert.Equal("cloudmem-capture-linux", send.RootElement.GetProperty("DocumentName").GetString());
            Assert.Equal("1", send.RootElement.GetProperty("DocumentVersion").GetString());
        }
        Assert.Single(File.ReadAllLines(world.Runs));
        Assert.Equal(started.UploadId, Assert.Single(manifest.Steps, s => s.Action == "start upload").Detail.Split(' ')[^1]);
        StepRecord complete = Assert.Single(manifest.Steps, s => s.Action == "complete upload");
        Assert.Contains($"upload {started.UploadId} ", complete.Detail);
        // Every attempt is in the manifest.
        string[] workflow = [.. manifest.Steps.Where(s => s.Action == "workflow").Select(s => s.Detail)];
        Assert.Contains(workflow, d => d.StartsWith("start attempt 1 ", StringComparison.Ordinal));
        Assert.Contains(workflow, d => d.StartsWith("start attempt 2 ", StringComparison.Ordinal) && d.EndsWith("resumed from the saved state", StringComparison.Ordinal));
        Assert.Contains(workflow, d => d.StartsWith("finalize attempt 1 stopped: step deadline", StringComparison.Ordinal));
        Assert.Contains(workflow, d => d.StartsWith("finalize attempt 2 stopped: step deadline", StringComparison.Ordinal));
        Assert.Contains(workflow, d => d.StartsWith("finalize attempt 3 ", StringComparison.Ordinal));
        Assert.Contains(manifest.Steps, s => s.Action == "resume" && s.Detail.Contains("command", StringComparison.Ordinal) && s.Detail.Contains("not sent again", StringComparison.Ordinal));
        // Attempt 3 goes on from the read-back attempt 2 saved (hashed to the end): the upload is not completed again.
        Assert.Contains(manifest.Steps, s => s.Action == "read back" && s.Detail.Contains($"bytes 0-{evidence.SizeBytes - 1} of {evidence.SizeBytes} hashed here", StringComparison.Ordinal));
        Assert.DoesNotContain(manifest.Steps, s => s.Action == "abort upload");

        Dictionary<string, AttributeValue> item = await world.ItemAsync();
        Assert.Equal("Captured", item["state"].S);
        // Another execution for the same finding (a re-published finding) does nothing.
        WorkflowResult duplicate = await world.StepAsync(Input("start", Execution + "-2"));
        Assert.Equal("Duplicate", duplicate.Status);
        Assert.True(duplicate.Done);
        Assert.Single(world.Harness.Fake.SendCommandBodies);
    }

    [SkippableFact]
    public async Task A_finalize_stopped_mid_read_back_and_finalizes_out_of_budget_go_on_from_the_saved_hash_state()
    {
        // The read-back saves its place after every piece.
        using var world = new World { ReadBackSaveEvery = TimeSpan.Zero, CheckpointMargin = TimeSpan.FromSeconds(1) };
        Assert.Equal("Started", (await world.StepAsync(Input("start"))).Status);
        await world.PollUntilDoneAsync();
        long length = new FileInfo(world.Harness.Fixture).Length;
        // Attempt 1 is killed 100 MiB into the read-back (the Lambda's sandbox died).
        await Assert.ThrowsAsync<OperationCanceledException>(() => world.StepAsync(Input("finalize"), afterReadBackPiece: (at, _) =>
            at >= 100L << 20 ? throw new OperationCanceledException("sandbox killed") : Task.CompletedTask));
        // Then each finalize has 1.5 s before its checkpoint (the 2.5 s budget less the 1 s margin), and each 1 MiB piece
        // takes at least 20 ms: the ~160 pieces left cannot be read in one finalize.
        world.StepBudget = TimeSpan.FromSeconds(2.5);
        WorkflowResult result;
        int finalizes = 1;
        do
        {
            result = await world.StepAsync(Input("finalize"), afterReadBackPiece: (_, token) => Task.Delay(20, token));
            Assert.True(++finalizes < 200, "finalize made no progress");
            Assert.Equal(result.Status != "Verifying", result.Done);
        }
        while (result.Status == "Verifying");

        Assert.Equal("Captured", result.Status);
        CustodyManifest manifest = CustodyManifest.Read(result.Manifest!);
        EvidenceRecord evidence = Assert.Single(manifest.Evidence);
        Assert.True(evidence.Verified, evidence.Problem);
        Assert.Equal(Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(world.Harness.Fixture))), evidence.Sha256);
        // The killed attempt recorded no range; the next went on from its last save (99 MiB), not from 0, and the ranges
        // of the following finalizes tile the rest of the object.
        string[] ranges = [.. manifest.Steps.Where(s => s.Action == "read back").Select(s => s.Detail.Split(": bytes ")[1].Split(' ')[0])];
        Assert.Equal(99L << 20, long.Parse(ranges[0].Split('-')[0], System.Globalization.CultureInfo.InvariantCulture));
        for (int i = 1; i < ranges.Length; i++)
        {
            Assert.Equal(long.Parse(ranges[i - 1].Split('-')[1], System.Globalization.CultureInfo.InvariantCulture) + 1, long.Parse(ranges[i].Split('-')[0], System.Globalization.CultureInfo.InvariantCulture));
        }
        Assert.Equal(length - 1, long.Parse(ranges[^1].Split('-')[1], System.Globalization.CultureInfo.InvariantCulture));
        Assert.True(ranges.Length >= 2, $"the read-back of {length} bytes never stopped at a checkpoint: {string.Join(", ", ranges)}");
        Assert.Single(manifest.Steps, s => s.Action == "complete upload");
        Assert.Single(File.ReadAllLines(world.Runs));
    }

    [SkippableFact]
    public async Task The_failure_path_cleans_up_and_records_a_failed_manifest()
    {
        using var world = new World();
        world.Harness.Fake.HangCommands = true;
        WorkflowResult started = await world.StepAsync(Input("start"));
        Assert.Equal("Started", started.Status);
        Assert.False((await world.StepAsync(Input("poll"))).Done);

        WorkflowResult failed = await world.StepAsync(Input("fail", error: """{"Error":"States.Timeout","Cause":"poll loop exceeded its limit"}"""));

        Assert.Equal("Failed", failed.Status);
        CustodyManifest manifest = CustodyManifest.Read(failed.Manifest!);
        Assert.Equal(CustodyStatus.Failed, manifest.Status);
        Assert.Equal("States.Timeout: poll loop exceeded its limit", manifest.Error);
        Assert.Contains(manifest.Steps, s => s.Action == "abort upload" && s.Detail.Contains(started.UploadId!, StringComparison.Ordinal));
        Assert.Contains(manifest.Steps, s => s.Action == "delete ticket parameter");
        Dictionary<string, AttributeValue> item = await world.ItemAsync();
        Assert.Equal("Failed", item["state"].S);
        Assert.Equal(failed.Manifest, item["manifest"].S);
    }

    [SkippableFact]
    public void Cli_lambda_runs_workflow_steps_from_step_functions_payloads()
    {
        using var world = new World();
        using var runtime = new FakeLambdaRuntime();
        string Payload(string step, string? error = null) => new System.Text.Json.Nodes.JsonObject
        {
            ["step"] = step,
            ["event"] = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(AlertEventParserTests.Event("guardduty-eventbridge-high.json"))),
            ["execution"] = Execution,
            ["error"] = error is null ? null : System.Text.Json.Nodes.JsonNode.Parse(error),
        }.ToJsonString();
        runtime.Enqueue(Payload("start"));
        runtime.Enqueue(Payload("fail", """{"Error":"States.TaskFailed","Cause":"stopped by the test"}"""));
        Dictionary<string, string> environment = world.CliEnvironment();
        environment["AWS_LAMBDA_RUNTIME_API"] = runtime.Api;
        (int exit, _, string stderr) = CliRunner.Run(environment, null, "lambda", "--max-invocations", "2");
        Assert.True(exit == 0, stderr);
        LambdaOutcome[] outcomes = [.. runtime.Outcomes];
        Assert.Equal(["response", "response"], outcomes.Select(o => o.Kind));
        JsonElement started = JsonDocument.Parse(outcomes[0].Body).RootElement;
        Assert.Equal("Started", started.GetProperty("status").GetString());
        Assert.False(started.GetProperty("done").GetBoolean());
        Assert.True(Guid.TryParse(started.GetProperty("commandId").GetString(), out _));
        JsonElement failed = JsonDocument.Parse(outcomes[1].Body).RootElement;
        Assert.Equal("Failed", failed.GetProperty("status").GetString());
        Assert.Equal("States.TaskFailed: stopped by the test", failed.GetProperty("reason").GetString());
        Assert.Single(world.Harness.Fake.SendCommandBodies);
    }

    [SkippableFact]
    public async Task A_finalize_that_outlives_lambda_continues_in_the_container_command_and_completes()
    {
        using var world = new World();
        WorkflowResult started = await world.StepAsync(Input("start"));
        Assert.Equal("Started", started.Status);
        await world.PollUntilDoneAsync();
        // The Lambda finalize ran out of time after CompleteMultipartUpload (States.Timeout): the state machine starts the
        // Fargate task, whose container runs `cloudmem workflow-step` with the step in its environment overrides.
        await Assert.ThrowsAsync<OperationCanceledException>(() => world.StepAsync(Input("finalize"), opener: (_, _, _) => throw new OperationCanceledException("lambda deadline")));
        Dictionary<string, string> environment = world.CliEnvironment();
        environment["CLOUDMEM_WORKFLOW_STEP"] = "finalize";
        environment["CLOUDMEM_WORKFLOW_EVENT"] = File.ReadAllText(AlertEventParserTests.Event("guardduty-eventbridge-high.json"));
        environment["CLOUDMEM_WORKFLOW_EXECUTION"] = Execution;

        (int exit, string stdout, string stderr) = CliRunner.Run(environment, null, "workflow-step");

        Assert.True(exit == 0, stderr);
        JsonElement result = JsonDocument.Parse(stdout).RootElement;
        Assert.Equal("Captured", result.GetProperty("status").GetString());
        CustodyManifest manifest = CustodyManifest.Read(result.GetProperty("manifest").GetString()!);
        Assert.Equal(CustodyStatus.Completed, manifest.Status);
        Assert.Contains(manifest.Steps, s => s.Action == "workflow" && s.Detail.StartsWith("finalize attempt 1 stopped: lambda deadline", StringComparison.Ordinal));
        Assert.Contains(manifest.Steps, s => s.Action == "workflow" && s.Detail.StartsWith("finalize attempt 2 ", StringComparison.Ordinal));
        Assert.Single(world.Harness.Fake.SendCommandBodies);
        Assert.Single(File.ReadAllLines(world.Runs));

        // Without its variables the command says which one is missing, in one line.
        (int missing, _, string error) = CliRunner.Run(new Dictionary<string, string>(environment) { ["CLOUDMEM_WORKFLOW_STEP"] = "" }, null, "workflow-step");
        Assert.Equal(2, missing);
        Assert.Contains("CLOUDMEM_WORKFLOW_STEP is not set", error, StringComparison.Ordinal);
    }
}
