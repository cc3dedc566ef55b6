using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using CloudMem.Connectors.Core;
using CloudMem.Connectors.Triggers;
using CloudMem.Tests.Connectors.Aws;
using CloudMem.Tests.Support;

namespace CloudMem.Tests.Connectors.Triggers;

/// <summary>The Lambda runtime loop against a local Runtime API, and the Azure Functions custom handler.</summary>
public sealed class UnattendedRunnerTests
{
    private static string Event(string name) => File.ReadAllText(AlertEventParserTests.Event(name));

    private static (AlertResponder Responder, StubTarget Aws, StubTarget Azure, StringWriter Log) Stubbed(bool planOnly = true, bool failCapture = false)
    {
        var text = new StringWriter();
        var log = new CaptureLog(new SecretScrubber(), text);
        var aws = new StubTarget(AlertSource.GuardDuty, failCapture);
        var azure = new StubTarget(AlertSource.Defender, failCapture);
        var responder = new AlertResponder(new TriggerPolicy(), [aws, azure], log)
        {
            PlanOnly = planOnly,
            OutputDirectory = Path.Combine(Path.GetTempPath(), "cloudmem-test-responder"),
        };
        return (responder, aws, azure, text);
    }

    private static async Task<List<LambdaOutcome>> RunLambdaAsync(FakeLambdaRuntime runtime, AlertResponder responder, int invocations)
    {
        using var http = new HttpClient { Timeout = Timeout.InfiniteTimeSpan };
        var loop = new LambdaRuntimeLoop(http, runtime.Api, new CaptureLog(new SecretScrubber(), TextWriter.Null));
        // Generous: a real capture runs inside, and test machines are shared.
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        int handled = await loop.RunAsync(async (invocation, token) => (await responder.RespondAsync(invocation.Payload, token)).ToJson(), invocations, timeout.Token);
        Assert.Equal(invocations, handled);
        return [.. runtime.Outcomes];
    }

    [Fact]
    public async Task Lambda_loop_plans_refuses_and_reports_errors_without_stopping()
    {
        using var runtime = new FakeLambdaRuntime();
        string good = runtime.Enqueue(Event("guardduty-eventbridge-high.json"));
        string broken = runtime.Enqueue("{\"detail-type\":\"GuardDuty Finding\",\"detail\":{\"id\":\"x\"");
        string missing = runtime.Enqueue(Event("guardduty-missing-instance.json"));
        string medium = runtime.Enqueue(Event("guardduty-finding-medium.json"));
        string big = runtime.Enqueue(new byte[TriggerLimits.MaxEventBytes + 10]);
        string after = runtime.Enqueue(Event("guardduty-eventbridge-high.json"));
        (AlertResponder responder, StubTarget aws, _, _) = Stubbed();

        List<LambdaOutcome> outcomes = await RunLambdaAsync(runtime, responder, 6);

        Assert.Equal([good, broken, missing, medium, big, after], outcomes.Select(o => o.RequestId));
        Assert.Equal(["response", "error", "error", "response", "error", "response"], outcomes.Select(o => o.Kind));
        JsonElement planned = JsonDocument.Parse(outcomes[0].Body).RootElement;
        Assert.Equal("Planned", planned.GetProperty("status").GetString());
        Assert.Equal("guardduty:c4ab91f07e2d3b5a8c6d1e0f2a3b4c5d", planned.GetProperty("trigger").GetString());
        Assert.Equal("gd-c4ab91f07e2d3b5a8c6d1e0f2a3b4c5d", planned.GetProperty("caseId").GetString());
        Assert.Equal("i-0123456789abcdef0", planned.GetProperty("target").GetString());
        Assert.True(planned.GetProperty("ready").GetBoolean());
        Assert.Contains("Plan: aws stub i-0123456789abcdef0", planned.GetProperty("plan").GetString());
        JsonElement error = JsonDocument.Parse(outcomes[2].Body).RootElement;
        Assert.Equal("event: $.detail.resource.instanceDetails.instanceId: missing", error.GetProperty("errorMessage").GetString());
        Assert.Equal("CloudMem.EventError", error.GetProperty("errorType").GetString());
        Assert.Equal("CloudMem.EventError", outcomes[2].ErrorType);
        Assert.StartsWith("event: $ (line 1", JsonDocument.Parse(outcomes[1].Body).RootElement.GetProperty("errorMessage").GetString());
        Assert.Contains("over the 1048576-byte limit", outcomes[4].Body);
        Assert.Equal("Refused", JsonDocument.Parse(outcomes[3].Body).RootElement.GetProperty("status").GetString());
        // Only the two accepted findings reached a connector, with the finding's trigger, case id and region.
        Assert.Equal(2, aws.Created.Count);
        (AlertEvent alert, CaptureRequest request) = aws.Created[0];
        Assert.Equal("eu-west-1", alert.Region);
        Assert.Equal(new CaptureTrigger(TriggerKind.GuardDuty, "c4ab91f07e2d3b5a8c6d1e0f2a3b4c5d"), request.Trigger);
        Assert.Equal("gd-c4ab91f07e2d3b5a8c6d1e0f2a3b4c5d", request.CaseId);
        Assert.True(request.PlanOnly);
    }

    [Fact]
    public async Task Lambda_capture_failure_is_an_invocation_error()
    {
        using var runtime = new FakeLambdaRuntime { Deadline = TimeSpan.FromDays(40000) };
        runtime.Enqueue(Event("guardduty-eventbridge-high.json"));
        (AlertResponder responder, _, _, _) = Stubbed(planOnly: false, failCapture: true);
        LambdaOutcome outcome = Assert.Single(await RunLambdaAsync(runtime, responder, 1));
        Assert.Equal("error", outcome.Kind);
        Assert.Equal("CloudMem.CaptureError", outcome.ErrorType);
        Assert.Contains("aws capture of i-0123456789abcdef0 failed: stub", outcome.Body);
    }

    [Fact]
    public void Runtime_api_address_is_checked()
    {
        var log = new CaptureLog(new SecretScrubber(), TextWriter.Null);
        using var http = new HttpClient();
        Assert.Contains("is not host:port", Assert.Throws<CaptureException>(() => new LambdaRuntimeLoop(http, "", log)).Message);
        Assert.Contains("is not host:port", Assert.Throws<CaptureException>(() => new LambdaRuntimeLoop(http, "http://x/", log)).Message);
    }

    [SkippableFact]
    public async Task Lambda_loop_drives_a_real_capture_through_the_aws_fakes()
    {
        string fixture = Fixture.Require("memory.lime");
        using var world = new AwsHarness(fixture);
        using var runtime = new FakeLambdaRuntime();
        string id = runtime.Enqueue(Event("guardduty-eventbridge-high.json"));
        string? regionAsked = null;
        var target = new AwsResponderTarget(region =>
        {
            regionAsked = region;
            return world.Connection;
        }, AwsHarness.Bucket, "cases", world.ToolFile, CloudMem.Cli.Commands.CaptureCli.ParserOpener, 8L << 20);
        var responder = new AlertResponder(new TriggerPolicy(), [target], world.Log)
        {
            OutputDirectory = world.OutputDirectory,
            Timeouts = new CaptureTimeouts { Command = TimeSpan.FromMinutes(3), PollInterval = TimeSpan.FromMilliseconds(200), Operation = TimeSpan.FromMinutes(1) },
        };

        LambdaOutcome outcome = Assert.Single(await RunLambdaAsync(runtime, responder, 1));

        Assert.True(outcome.Kind == "response", outcome.Body + "\n" + world.LogText);
        Assert.Equal(id, outcome.RequestId);
        Assert.Equal("eu-west-1", regionAsked);
        JsonElement body = JsonDocument.Parse(outcome.Body).RootElement;
        Assert.Equal("Captured", body.GetProperty("status").GetString());
        CustodyManifest manifest = CustodyManifest.Read(body.GetProperty("manifest").GetString()!);
        Assert.Equal(CustodyStatus.Completed, manifest.Status);
        Assert.Equal("gd-c4ab91f07e2d3b5a8c6d1e0f2a3b4c5d", manifest.CaseId);
        Assert.Equal(new TriggerRecord("GuardDuty", "c4ab91f07e2d3b5a8c6d1e0f2a3b4c5d"), manifest.Trigger);
        EvidenceRecord evidence = Assert.Single(manifest.Evidence);
        Assert.True(evidence.Verified);
        Assert.StartsWith("LiME", evidence.OpenedAs, StringComparison.Ordinal);
        Assert.Equal(new FileInfo(fixture).Length, evidence.SizeBytes);
        Assert.StartsWith("s3://evidence/cases/gd-c4ab91f07e2d3b5a8c6d1e0f2a3b4c5d/i-0123456789abcdef0/", evidence.Uri, StringComparison.Ordinal);
        // Every EC2/SSM/STS operation this capture made is one the responder's IAM role is granted.
        foreach (string operation in world.Fake.Operations.Distinct())
        {
            Assert.True(CloudMem.Connectors.Aws.AwsCapturePermissions.ForOperation(operation) is not null, $"{operation} is not in AwsCapturePermissions");
        }
    }

    private static async Task<(int Status, JsonObject Answer)> InvokeFunctionAsync(HttpClient http, int port, string invocation, string host = "127.0.0.1")
    {
        using HttpResponseMessage response = await http.PostAsync($"http://{host}:{port}/respond", new StringContent(invocation, Encoding.UTF8, "application/json"));
        return ((int)response.StatusCode, (JsonObject)JsonNode.Parse(await response.Content.ReadAsStringAsync())!);
    }

    [Fact]
    public async Task Function_handler_answers_defender_events_and_survives_bad_ones()
    {
        (AlertResponder responder, _, StubTarget azure, StringWriter logText) = Stubbed();
        var log = new CaptureLog(new SecretScrubber(), logText);
        int port = Emulators.FreePort();
        await using var server = new FunctionHandlerServer(port, responder.RespondAsync, log);
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        Task serving = server.RunAsync(stop.Token);
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };

        // Event Grid trigger: the binding's value is the event.
        var eventGrid = new JsonObject
        {
            ["Data"] = new JsonObject { ["eventGridEvent"] = new JsonObject { ["id"] = "evt-1", ["eventType"] = "CloudMem.DefenderAlert", ["subject"] = "alerts/x", ["data"] = JsonNode.Parse(Event("defender-alert-high.json")) } },
            ["Metadata"] = new JsonObject { ["sys"] = new JsonObject { ["MethodName"] = "respond" } },
        };
        (int status, JsonObject answer) = await InvokeFunctionAsync(http, port, eventGrid.ToJsonString());
        Assert.Equal(200, status);
        Assert.Equal(200, (int)answer["Outputs"]!["res"]!["statusCode"]!);
        Assert.Equal("Planned", (string)answer["ReturnValue"]!["status"]!);
        Assert.Equal("defender:2517412345678901234_8c1f2e3d-4b5a-4697-8a7b-6c5d4e3f2a1b", (string)answer["ReturnValue"]!["trigger"]!);
        Assert.StartsWith("accepted: Defender alert", (string)answer["Logs"]![0]!);
        Assert.Single(azure.Created);

        // Malformed: a handled invocation with res 400 and the field in Logs (not retried by Event Grid).
        var broken = new JsonObject { ["Data"] = new JsonObject { ["eventGridEvent"] = new JsonObject { ["eventType"] = "x", ["data"] = new JsonObject { ["properties"] = new JsonObject { ["alertType"] = "VM_X", ["severity"] = "High" } } } } };
        (status, answer) = await InvokeFunctionAsync(http, port, broken.ToJsonString());
        Assert.Equal(200, status);
        Assert.Equal(400, (int)answer["Outputs"]!["res"]!["statusCode"]!);
        Assert.Equal("event: $.data.properties.systemAlertId: missing (and no name)", (string)answer["Logs"]![0]!);
        (status, answer) = await InvokeFunctionAsync(http, port, "{\"Metadata\":{}}", "localhost");
        Assert.Equal(400, (int)answer["Outputs"]!["res"]!["statusCode"]!);
        Assert.Contains("$.Data", (string)answer["Logs"]![0]!);

        // HTTP trigger (an action group webhook): the request's Body, as a string, holds the common alert schema.
        var httpTrigger = new JsonObject
        {
            ["Data"] = new JsonObject { ["req"] = new JsonObject { ["Url"] = "http://localhost/api/respond", ["Method"] = "POST", ["Headers"] = new JsonObject(), ["Body"] = Event("defender-common-schema.json") } },
            ["Metadata"] = new JsonObject(),
        };
        (status, answer) = await InvokeFunctionAsync(http, port, httpTrigger.ToJsonString());
        Assert.Equal(200, status);
        Assert.Equal("Planned", (string)answer["ReturnValue"]!["status"]!);
        Assert.EndsWith("/virtualmachines/api-vm-02", (string)answer["ReturnValue"]!["target"]!);

        // A refused (Medium) alert is a success with the reason.
        (status, answer) = await InvokeFunctionAsync(http, port, new JsonObject { ["Data"] = new JsonObject { ["eventGridEvent"] = JsonNode.Parse(Event("defender-eventgrid-medium.json"))![0]!.DeepClone() } }.ToJsonString());
        Assert.Equal(200, status);
        Assert.Equal("Refused", (string)answer["ReturnValue"]!["status"]!);
        Assert.Equal(2, azure.Created.Count);

        stop.Cancel();
        await serving;
    }

    [Fact]
    public async Task Function_handler_capture_failure_is_a_500()
    {
        (AlertResponder responder, _, _, StringWriter logText) = Stubbed(planOnly: false, failCapture: true);
        int port = Emulators.FreePort();
        await using var server = new FunctionHandlerServer(port, responder.RespondAsync, new CaptureLog(new SecretScrubber(), logText));
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        Task serving = server.RunAsync(stop.Token);
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
        var invocation = new JsonObject { ["Data"] = new JsonObject { ["alert"] = Event("defender-alert-high.json") } };
        (int status, JsonObject answer) = await InvokeFunctionAsync(http, port, invocation.ToJsonString());
        Assert.Equal(500, status);
        Assert.Equal("Failed", (string)answer["ReturnValue"]!["status"]!);
        Assert.Contains("azure capture of /subscriptions/", (string)answer["Logs"]![0]!);
        stop.Cancel();
        await serving;
    }

    [SkippableFact]
    public void Cli_lambda_dry_run_plans_against_the_aws_fakes_and_keeps_going()
    {
        string fixture = Fixture.Require("memory.lime");
        using var world = new AwsHarness(fixture);
        using var runtime = new FakeLambdaRuntime();
        runtime.Enqueue(Event("guardduty-eventbridge-high.json"));
        runtime.Enqueue("not json");
        var environment = new Dictionary<string, string>
        {
            ["AWS_LAMBDA_RUNTIME_API"] = runtime.Api,
            ["AWS_ACCESS_KEY_ID"] = AwsHarness.AccessKey,
            ["AWS_SECRET_ACCESS_KEY"] = AwsHarness.SecretKey,
            ["AWS_SESSION_TOKEN"] = AwsHarness.SessionToken,
            ["AWS_REGION"] = "us-east-1",
            ["AWS_CONFIG_FILE"] = "/nonexistent",
            ["AWS_SHARED_CREDENTIALS_FILE"] = "/nonexistent",
            ["AWS_EC2_METADATA_DISABLED"] = "true",
            ["AWS_ENDPOINT_URL_EC2"] = world.Fake.Url,
            ["AWS_ENDPOINT_URL_SSM"] = world.Fake.Url,
            ["AWS_ENDPOINT_URL_STS"] = world.Fake.Url,
            ["AWS_ENDPOINT_URL_S3"] = world.S3.Url,
            ["CLOUDMEM_BUCKET"] = AwsHarness.Bucket,
            ["CLOUDMEM_PREFIX"] = "cases",
            ["CLOUDMEM_TOOL_FILE"] = world.ToolFile,
            ["CLOUDMEM_DRY_RUN"] = "1",
            ["CLOUDMEM_OUT"] = world.OutputDirectory,
        };
        (int exit, _, string stderr) = CliRunner.Run(environment, null, "lambda", "--max-invocations", "2");
        Assert.True(exit == 0, stderr);
        LambdaOutcome[] outcomes = [.. runtime.Outcomes];
        Assert.Equal(["response", "error"], outcomes.Select(o => o.Kind));
        JsonElement planned = JsonDocument.Parse(outcomes[0].Body).RootElement;
        Assert.Equal("Planned", planned.GetProperty("status").GetString());
        Assert.True(planned.GetProperty("ready").GetBoolean(), planned.GetProperty("plan").GetString());
        Assert.Contains("event: $ (line 1", outcomes[1].Body);
        // Plan only: no mutating call reached the fake.
        Assert.DoesNotContain(world.Fake.Operations, o => o is "ssm:SendCommand" or "ec2:CreateTags" or "ssm:PutParameter");
        Assert.DoesNotContain(AwsHarness.SecretKey, stderr);
    }

    [Fact]
    public void Cli_lambda_reports_a_configuration_error_as_init_error()
    {
        using var runtime = new FakeLambdaRuntime();
        (int exit, _, string stderr) = CliRunner.Run(new Dictionary<string, string> { ["AWS_LAMBDA_RUNTIME_API"] = runtime.Api, ["CLOUDMEM_BUCKET"] = "" }, null, "lambda", "--max-invocations", "1");
        Assert.Equal(2, exit);
        Assert.Contains("no evidence store", stderr);
        LambdaOutcome outcome = Assert.Single(runtime.Outcomes);
        Assert.Equal("init-error", outcome.Kind);
        Assert.Contains("no evidence store", outcome.Body);
    }

    private sealed class ThrowingTarget : IResponderTarget
    {
        public AlertSource Source => AlertSource.Defender;

        public ConnectorLease Create(AlertEvent alert, CaptureRequest request, CaptureLog log) => throw new IOException("disk full");
    }

    [Fact]
    public async Task Function_handler_answers_even_when_something_unexpected_throws()
    {
        var log = new CaptureLog(new SecretScrubber(), TextWriter.Null);
        var responder = new AlertResponder(new TriggerPolicy(), [new ThrowingTarget()], log) { OutputDirectory = Path.Combine(Path.GetTempPath(), "cloudmem-test-responder") };
        int port = Emulators.FreePort();
        await using var server = new FunctionHandlerServer(port, responder.RespondAsync, log);
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        Task serving = server.RunAsync(stop.Token);
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
        var invocation = new JsonObject { ["Data"] = new JsonObject { ["alert"] = Event("defender-alert-high.json") } };
        (int status, JsonObject answer) = await InvokeFunctionAsync(http, port, invocation.ToJsonString());
        Assert.Equal(500, status);
        Assert.Equal("IOException: disk full", (string)answer["Logs"]![0]!);
        // And it keeps serving.
        (status, _) = await InvokeFunctionAsync(http, port, invocation.ToJsonString());
        Assert.Equal(500, status);
        stop.Cancel();
        await serving;
    }

    [Fact]
    public void Manifest_names_stay_short_with_arm_ids_and_alert_case_ids()
    {
        var manifest = new CustodyManifest
        {
            Provider = "azure",
            Trigger = new TriggerRecord("Defender", "x"),
            Method = "runcommand-avml",
            Host = new HostRecord("m", "v", "os"),
            TargetId = "/subscriptions/5a7c9e11-2b4d-4f60-8a1c-3e5f7a9b0c2d/resourceGroups/a-rather-long-resource-group-name/providers/Microsoft.Compute/virtualMachines/a-long-virtual-machine-name-01",
            CaseId = "defender-2517412345678901234_8c1f2e3d-4b5a-4697-8a7b-6c5d4e3f2a1b",
            StartedUtc = new DateTimeOffset(2026, 11, 25, 22, 0, 0, TimeSpan.Zero),
        };
        string name = CustodyRecorder.DefaultFileName(manifest);
        Assert.True(name.Length <= 200, name);
        Assert.StartsWith("azure-", name);
        Assert.Contains("a-long-virtual-machine-name-01", name);
        Assert.EndsWith("-20261125T220000Z.custody.json", name);
        // Short ones are unchanged.
        Assert.Equal("aws-i-0abc-IR-42-20261125T220000Z.custody.json", CustodyRecorder.DefaultFileName(manifest with { Provider = "aws", TargetId = "i-0abc", CaseId = "IR-42" }));
    }
}
