using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Azure.Data.Tables;
using CloudMem.Connectors.Azure;
using CloudMem.Connectors.Core;
using CloudMem.Connectors.Triggers;
using CloudMem.Tests.Support;
using DurableTask.Core;

namespace CloudMem.Tests.Connectors.Azure;

/// <summary>azurite with Blob, Queue and Table (the Durable Task Azure Storage backend needs all three), one per class.</summary>
public sealed class DurableAzurite : IDisposable
{
    public AzuriteHost Host { get; } = new(https: false, allServices: true);

    /// <summary>Hub timings short enough that a killed worker's work returns within seconds.</summary>
    internal static DurableHubTimings Fast { get; } = new()
    {
        WorkItemVisibility = TimeSpan.FromSeconds(8),
        ControlVisibility = TimeSpan.FromSeconds(8),
        Lease = TimeSpan.FromSeconds(6),
        MaxPollingInterval = TimeSpan.FromMilliseconds(500),
    };

    /// <summary>The high-severity Defender alert test event, aimed at the test bed's VM.</summary>
    internal static string Alert(AzureTestBed bed)
        => File.ReadAllText(Triggers.AlertEventParserTests.Event("defender-alert-high.json"))
            .Replace("/subscriptions/5a7c9e11-2b4d-4f60-8a1c-3e5f7a9b0c2d/resourceGroups/prod-web/providers/Microsoft.Compute/virtualMachines/web-vm-07", bed.VmId, StringComparison.Ordinal);

    /// <summary>A fresh table or hub name.</summary>
    internal static string Unique(string prefix) => prefix + Guid.NewGuid().ToString("N")[..10];

    public void Dispose() => Host.Dispose();
}

/// <summary>
/// The Azure durable workflow on the real Durable Task Framework and its real Azure Storage backend (queues, tables,
/// blobs of azurite), the real ARM SDK against the fake ARM whose Run Command runs the guest script, and a real
/// fixture capture: duplicates run the guest once, a killed worker process resumes without a second run.
/// </summary>
public sealed class AzureDurableCaptureTests(DurableAzurite azurite) : IClassFixture<DurableAzurite>
{
    private static readonly DurableHubTimings s_fast = DurableAzurite.Fast;

    private static string Alert(AzureTestBed bed) => DurableAzurite.Alert(bed);

    private static string Unique(string prefix) => DurableAzurite.Unique(prefix);

    [SkippableFact]
    public async Task SameAlertTwiceConcurrently_OneOrchestration_GuestRunsOnce_ManifestBesideEvidence()
    {
        string fixture = Fixture.Require("memory.avml");
        AzuriteHost host = azurite.Host;
        await using var bed = new AzureTestBed(host, fixture);
        string table = Unique("captures");
        var ledger = new TableCaptureLedger(new TableServiceClient(host.ConnectionString).GetTableClient(table), bed.Log);
        await ledger.CreateIfNotExistsAsync(CancellationToken.None);
        var target = new AzureResponderTarget(bed.ContainerUrl, () => bed.Credential, host.Credential, bed.ArmSettings,
            bed.ToolFile, "0.14.0 (test stand-in)", CloudMem.Cli.Commands.CaptureCli.ParserOpener, host.ClientOptions());
        var steps = new AzureWorkflowSteps(new TriggerPolicy(), target, ledger, bed.Log)
        {
            OutputDirectory = bed.OutDir,
            Timeouts = new CaptureTimeouts { Command = TimeSpan.FromMinutes(3), PollInterval = TimeSpan.FromSeconds(1) },
        };
        var hub = new DurableCaptureHub(host.ConnectionString, Unique("hub"), bed.Log, s_fast);
        await hub.CreateIfNotExistsAsync();
        byte[] alert = Encoding.UTF8.GetBytes(Alert(bed));

        // Event Grid delivers the same alert twice at once: both Function invocations try to start it.
        DurableStart[] starts = await Task.WhenAll(
            hub.StartAsync(alert, new TriggerPolicy(), TimeSpan.FromSeconds(1), ledger, CancellationToken.None),
            hub.StartAsync(alert, new TriggerPolicy(), TimeSpan.FromSeconds(1), ledger, CancellationToken.None));
        Assert.Single(starts, s => s.Status == DurableStartStatus.Started);
        Assert.Single(starts, s => s.Status == DurableStartStatus.Duplicate);
        Assert.Equal(starts[0].InstanceId, starts[1].InstanceId);
        // A third, later delivery is refused too.
        Assert.Equal(DurableStartStatus.Duplicate, (await hub.StartAsync(alert, new TriggerPolicy(), TimeSpan.FromSeconds(1), ledger, CancellationToken.None)).Status);

        using var stop = new CancellationTokenSource();
        Task worker = hub.RunWorkerAsync(steps, stop.Token);
        OrchestrationState? state = await hub.WaitAsync(starts[0].InstanceId!, TimeSpan.FromMinutes(4), CancellationToken.None);
        stop.Cancel();
        await worker;

        Assert.NotNull(state);
        Assert.True(state.OrchestrationStatus == OrchestrationStatus.Completed, $"{state.OrchestrationStatus}: {state.Output}\n{bed.LogText}");
        JsonNode output = Output(state);
        Assert.Equal("Captured", (string?)output["status"]);
        Assert.Single(bed.Arm.Scripts);
        CustodyManifest manifest = CustodyManifest.Read((string)output["manifest"]!);
        Assert.Equal(CustodyStatus.Completed, manifest.Status);
        Assert.True(Assert.Single(manifest.Evidence).Verified);
        Assert.Contains(manifest.Steps, s => s.Action == "workflow" && s.Detail.StartsWith("verify attempt 1", StringComparison.Ordinal));
        // The manifest is beside the evidence, byte for byte the local one.
        string blob = Path.ChangeExtension(manifest.Evidence[0].Name, null) + ".custody.json";
        byte[] stored = (await bed.ContainerClient.GetBlobClient(blob).DownloadContentAsync()).Value.Content.ToArray();
        Assert.Equal(File.ReadAllBytes((string)output["manifest"]!), stored);
        // The claim records the outcome; the instance id is derived from the alert and the VM.
        Dictionary<string, string> claim = await ledger.GetAsync(TableCaptureLedger.AlertKey(AlertEventParser.Parse(alert)), CancellationToken.None);
        Assert.Equal("Captured", claim["state"]);
        Assert.Equal(DurableCaptureHub.InstanceId(AlertEventParser.Parse(alert)), starts[0].InstanceId);
    }

    [SkippableFact]
    public async Task FunctionHandlerInDurableMode_StartsTheOrchestrationOnce_AndAnswersAtOnce()
    {
        string fixture = Fixture.Require("memory.avml");
        AzuriteHost host = azurite.Host;
        await using var bed = new AzureTestBed(host, fixture);
        var ledger = new TableCaptureLedger(new TableServiceClient(host.ConnectionString).GetTableClient(Unique("captures")), bed.Log);
        await ledger.CreateIfNotExistsAsync(CancellationToken.None);
        var hub = new DurableCaptureHub(host.ConnectionString, Unique("hub"), bed.Log, s_fast);
        await hub.CreateIfNotExistsAsync();
        int port = Emulators.FreePort();
        await using var server = new FunctionHandlerServer(port, (body, token) => hub.RespondAsync(body, new TriggerPolicy(), TimeSpan.FromSeconds(1), ledger, token), bed.Log);
        using var stop = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        Task serving = server.RunAsync(stop.Token);
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(60) };
        string invocation = new JsonObject { ["Data"] = new JsonObject { ["eventGridEvent"] = new JsonObject { ["eventType"] = "CloudMem.DefenderAlert", ["data"] = JsonNode.Parse(Alert(bed)) } } }.ToJsonString();

        // Event Grid delivers the alert twice; no worker runs, so nothing may touch the VM.
        var clock = Stopwatch.StartNew();
        var answers = new List<JsonNode>();
        foreach (int _ in new[] { 1, 2 })
        {
            using HttpResponseMessage response = await http.PostAsync($"http://127.0.0.1:{port}/respond", new StringContent(invocation, Encoding.UTF8, "application/json"));
            answers.Add(JsonNode.Parse(await response.Content.ReadAsStringAsync())!);
        }
        stop.Cancel();
        await serving;

        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), $"the handler took {clock.Elapsed}");
        Assert.Equal(202, (int)answers[0]["Outputs"]!["res"]!["statusCode"]!);
        Assert.Equal("Started", (string?)answers[0]["ReturnValue"]!["status"]);
        Assert.Equal(200, (int)answers[1]["Outputs"]!["res"]!["statusCode"]!);
        Assert.Equal("Duplicate", (string?)answers[1]["ReturnValue"]!["status"]);
        Assert.Empty(bed.Arm.Calls);
        OrchestrationState? state = await hub.GetStateAsync(DurableCaptureHub.InstanceId(AlertEventParser.Parse(Encoding.UTF8.GetBytes(Alert(bed)))));
        Assert.Equal(OrchestrationStatus.Pending, state?.OrchestrationStatus);
    }

    [SkippableFact]
    public async Task GuestScriptFails_OrchestrationTakesTheFailPath_FailedManifestBesideTheEvidence()
    {
        string fixture = Fixture.Require("memory.avml");
        AzuriteHost host = azurite.Host;
        await using var bed = new AzureTestBed(host, fixture);
        File.WriteAllText(bed.ToolFile, "#!/bin/sh\necho 'avml: cannot open /dev/crash' >&2\nexit 3\n");
        var ledger = new TableCaptureLedger(new TableServiceClient(host.ConnectionString).GetTableClient(Unique("captures")), bed.Log);
        await ledger.CreateIfNotExistsAsync(CancellationToken.None);
        var target = new AzureResponderTarget(bed.ContainerUrl, () => bed.Credential, host.Credential, bed.ArmSettings,
            bed.ToolFile, null, CloudMem.Cli.Commands.CaptureCli.ParserOpener, host.ClientOptions());
        var steps = new AzureWorkflowSteps(new TriggerPolicy(), target, ledger, bed.Log)
        {
            OutputDirectory = bed.OutDir,
            Timeouts = new CaptureTimeouts { Command = TimeSpan.FromMinutes(3), PollInterval = TimeSpan.FromSeconds(1) },
        };
        var hub = new DurableCaptureHub(host.ConnectionString, Unique("hub"), bed.Log, s_fast);
        await hub.CreateIfNotExistsAsync();
        DurableStart start = await hub.StartAsync(Encoding.UTF8.GetBytes(Alert(bed)), new TriggerPolicy(), TimeSpan.FromSeconds(1), ledger, CancellationToken.None);

        using var stop = new CancellationTokenSource();
        Task worker = hub.RunWorkerAsync(steps, stop.Token);
        OrchestrationState? state = await hub.WaitAsync(start.InstanceId!, TimeSpan.FromMinutes(4), CancellationToken.None);
        stop.Cancel();
        await worker;

        Assert.NotNull(state);
        JsonNode output = Output(state);
        Assert.True((string?)output["status"] == "Failed", state.Output + "\n" + bed.LogText);
        CustodyManifest manifest = CustodyManifest.Read((string)output["manifest"]!);
        Assert.Equal(CustodyStatus.Failed, manifest.Status);
        Assert.Contains("ended Failed (exit 3): avml exited with status 3", manifest.Error);
        // The run command's instance view said Failed (exit 3): the steps were retried without running the tool again,
        // then the fail step deleted the run command and wrote the manifest.
        Assert.Single(bed.Arm.Scripts);
        Assert.Single(bed.Arm.DeletedRunCommands);
        Assert.Contains(manifest.Steps, s => s.Action == "delete run command" && !s.Detail.Contains("FAILED", StringComparison.Ordinal));
        var blobs = new List<string>();
        await foreach (var item in bed.ContainerClient.GetBlobsAsync())
        {
            blobs.Add(item.Name);
        }
        Assert.Contains(blobs, b => b.EndsWith(".custody.json", StringComparison.Ordinal));
    }

    [SkippableFact]
    public async Task WorkerProcessKilledMidOrchestration_RestartedWorkerResumes_GuestRunsOnce()
    {
        string fixture = Fixture.Require("memory.avml");
        AzuriteHost host = azurite.Host;
        await using var bed = new AzureTestBed(host, fixture);
        string table = Unique("captures");
        string hubName = Unique("hub");
        var ledger = new TableCaptureLedger(new TableServiceClient(host.ConnectionString).GetTableClient(table), bed.Log);
        await ledger.CreateIfNotExistsAsync(CancellationToken.None);
        var hub = new DurableCaptureHub(host.ConnectionString, hubName, bed.Log, s_fast);
        await hub.CreateIfNotExistsAsync();
        byte[] alert = Encoding.UTF8.GetBytes(Alert(bed));
        string alertKey = TableCaptureLedger.AlertKey(AlertEventParser.Parse(alert));

        // The worker's managed identity: the App Service / Container Apps identity endpoint protocol, served here.
        using var identity = new IdentityEndpoint();
        string armPem = Path.Combine(bed.OutDir, "..", "arm.pem");
        File.WriteAllText(armPem, bed.Arm.Certificate.ExportCertificatePem());
        var environment = new Dictionary<string, string>
        {
            ["CLOUDMEM_DURABLE_STORAGE"] = host.ConnectionString,
            ["CLOUDMEM_DURABLE_HUB"] = hubName,
            ["CLOUDMEM_DURABLE_TABLE"] = table,
            ["CLOUDMEM_DURABLE_VISIBILITY_SECONDS"] = "8",
            ["CLOUDMEM_CONTAINER_URL"] = bed.ContainerUrl.AbsoluteUri,
            ["AZURE_STORAGE_KEY"] = AzuriteHost.Key,
            ["CLOUDMEM_ARM_ENDPOINT"] = bed.Arm.Endpoint.AbsoluteUri,
            ["CLOUDMEM_TOOL_FILE"] = bed.ToolFile,
            ["CLOUDMEM_OUT"] = bed.OutDir,
            ["CLOUDMEM_POLL_SECONDS"] = "1",
            ["IDENTITY_ENDPOINT"] = identity.Url,
            ["IDENTITY_HEADER"] = identity.Header,
            ["SSL_CERT_FILE"] = Path.GetFullPath(armPem),
        };

        DurableStart start = await hub.StartAsync(alert, new TriggerPolicy(), TimeSpan.FromSeconds(1), ledger, CancellationToken.None);
        Assert.Equal(DurableStartStatus.Started, start.Status);
        using (EmulatorProcess first = Worker(environment))
        {
            // Kill as soon as the verify step is on record: the worker dies while it reads the 47 MB image back.
            var clock = Stopwatch.StartNew();
            while (!(await ledger.GetAsync(alertKey, CancellationToken.None)).GetValueOrDefault("attempts", "").Contains("\"verify\":1", StringComparison.Ordinal))
            {
                Assert.True(clock.Elapsed < TimeSpan.FromMinutes(2), "the first worker never reached verify:\n" + first.Output);
                Assert.False(first.HasExited, "the first worker exited:\n" + first.Output);
                await Task.Delay(20);
            }
        }
        Assert.Single(bed.Arm.Scripts);

        using EmulatorProcess second = Worker(environment);
        OrchestrationState? state = await hub.WaitAsync(start.InstanceId!, TimeSpan.FromMinutes(4), CancellationToken.None);
        string secondOutput = second.Output;

        Assert.NotNull(state);
        Assert.True(state.OrchestrationStatus == OrchestrationStatus.Completed, $"{state.OrchestrationStatus}: {state.Output}\n{secondOutput}");
        JsonNode output = Output(state);
        Assert.True((string?)output["status"] == "Captured", state.Output + "\n" + secondOutput);
        Assert.Single(bed.Arm.Scripts);
        CustodyManifest manifest = CustodyManifest.Read((string)output["manifest"]!);
        Assert.Equal(CustodyStatus.Completed, manifest.Status);
        Assert.Equal(Sha256(fixture), Assert.Single(manifest.Evidence).Sha256);
        // Both attempts of the interrupted step are in the manifest; the evidence was verified once, by the second.
        Assert.Contains(manifest.Steps, s => s.Action == "workflow" && s.Detail.StartsWith("verify attempt 1", StringComparison.Ordinal));
        Assert.Contains(manifest.Steps, s => s.Action == "workflow" && s.Detail.StartsWith("verify attempt 2", StringComparison.Ordinal) && s.Detail.EndsWith("resumed from the saved state", StringComparison.Ordinal));
        Assert.Single(manifest.Steps, s => s.Action == "verify evidence");
        Assert.True(identity.Requests > 0, "the worker never asked the identity endpoint for a token");
    }

    /// <summary>The orchestration's output: the framework stores the returned string JSON-encoded.</summary>
    private static JsonNode Output(OrchestrationState state) => JsonNode.Parse(JsonSerializer.Deserialize<string>(state.Output)!)!;

    private static string Sha256(string path)
    {
        using FileStream file = File.OpenRead(path);
        return Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(file));
    }

    /// <summary><c>cloudmem durable-worker</c> as a child process (dispose kills it with SIGKILL: it is not asked to stop).</summary>
    private static EmulatorProcess Worker(IReadOnlyDictionary<string, string> environment)
        => new("dotnet", [CliRunner.CliDll, "durable-worker"], 0, null, environment);

    /// <summary>
    /// The managed identity endpoint of App Service / Container Apps (IDENTITY_ENDPOINT + X-IDENTITY-HEADER, api-version
    /// 2019-08-01), issuing unsigned JWTs (the fake ARM does not check signatures) to a worker that uses the SDK's own
    /// ManagedIdentityCredential through DefaultAzureCredential.
    /// </summary>
    private sealed class IdentityEndpoint : IDisposable
    {
        private readonly HttpListener _listener = new();
        private readonly Task _loop;
        private int _requests;

        public IdentityEndpoint()
        {
            int port = Emulators.FreePort();
            Url = $"http://127.0.0.1:{port}/msi/token";
            _listener.Prefixes.Add($"http://127.0.0.1:{port}/");
            _listener.Start();
            _loop = HttpListenerLoop.RunAsync(_listener, ServeAsync);
        }

        public string Url { get; }

        public string Header { get; } = Guid.NewGuid().ToString("N");

        public int Requests => Volatile.Read(ref _requests);

        private async Task ServeAsync(HttpListenerContext context)
        {
            Interlocked.Increment(ref _requests);
            bool ok = context.Request.Headers["X-IDENTITY-HEADER"] == Header;
            string resource = context.Request.QueryString["resource"] ?? "https://management.azure.com";
            long expires = DateTimeOffset.UtcNow.AddHours(1).ToUnixTimeSeconds();
            static string B64(string s) => Convert.ToBase64String(Encoding.UTF8.GetBytes(s)).TrimEnd('=').Replace('+', '-').Replace('/', '_');
            string jwt = $"{B64("{\"alg\":\"none\",\"typ\":\"JWT\"}")}.{B64(JsonSerializer.Serialize(new { oid = "00000000-0000-0000-0000-0000000000d7", appid = "cloudmem-worker", tid = "test", aud = resource, exp = expires }))}.";
            string body = ok
                ? JsonSerializer.Serialize(new { access_token = jwt, expires_on = expires.ToString(System.Globalization.CultureInfo.InvariantCulture), resource, token_type = "Bearer" })
                : "{\"error\":\"bad identity header\"}";
            context.Response.StatusCode = ok ? 200 : 401;
            context.Response.ContentType = "application/json";
            byte[] bytes = Encoding.UTF8.GetBytes(body);
            await context.Response.OutputStream.WriteAsync(bytes);
            context.Response.Close();
        }

        public void Dispose()
        {
            HttpListenerLoop.Shut(_listener);
            try
            {
                _loop.Wait(TimeSpan.FromSeconds(5));
            }
            catch (AggregateException)
            {
            }
        }
    }
}
