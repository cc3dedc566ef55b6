using System.Security.Cryptography;
using System.Text.Json;
using System.Text.RegularExpressions;
using System.Web;
using Azure.Storage.Blobs.Models;
using CloudMem.Connectors.Azure;
using CloudMem.Connectors.Core;
using CloudMem.Tests.Support;

namespace CloudMem.Tests.Connectors.Azure;

/// <summary>
/// The Azure connector end to end: the real ArmClient against the HTTPS fake ARM (whose runCommand really runs the
/// generated guest script), the real Blob SDK and curl against azurite, real fixture captures.
/// </summary>
public sealed partial class AzureCaptureTests(AzuriteHost azurite) : IClassFixture<AzuriteHost>
{
    private static string Sha256File(string path)
    {
        using FileStream file = File.OpenRead(path);
        return Convert.ToHexStringLower(SHA256.HashData(file));
    }

    private static async Task<string> Sha256Blob(AzureTestBed bed, string blobName)
    {
        BlobDownloadStreamingResult download = (await bed.ContainerClient.GetBlobClient(blobName).DownloadStreamingAsync()).Value;
        await using Stream content = download.Content;
        return Convert.ToHexStringLower(await SHA256.HashDataAsync(content));
    }

    [SkippableFact]
    public async Task WholeAvmlCapture_ManifestHashEqualsBlobAndFixture_AndInfoOpensTheDownload()
    {
        string fixture = Fixture.Require("memory.avml");
        await using var bed = new AzureTestBed(azurite, fixture);

        CaptureResult result = await bed.Connector(bed.Request()).CaptureAsync(CancellationToken.None);

        CustodyManifest manifest = CustodyManifest.Read(result.ManifestPath);
        Assert.Equal(CustodyStatus.Completed, manifest.Status);
        EvidenceRecord evidence = Assert.Single(manifest.Evidence);
        string fixtureSha = Sha256File(fixture);
        Assert.Equal(fixtureSha, evidence.Sha256);
        Assert.Equal(fixtureSha, evidence.SourceSha256);
        Assert.Equal(fixtureSha, await Sha256Blob(bed, evidence.Name));
        Assert.Equal(new FileInfo(fixture).Length, evidence.SizeBytes);
        Assert.True(evidence.Verified);
        Assert.False(string.IsNullOrEmpty(evidence.Stored?.ETag));
        Assert.StartsWith("AVML", evidence.OpenedAs);
        Assert.StartsWith("IR-42/vm1-", evidence.Name);
        Assert.Equal(fixtureSha, Sha256File(evidence.LocalPath!));
        Assert.Equal("azure", manifest.Provider);
        Assert.Equal("Defender", manifest.Trigger.Kind);
        Assert.Equal("2517538088322968242_abc", manifest.Trigger.Id);
        Assert.Contains("oid 00000000-0000-0000-0000-00000000c10d", manifest.Operator!.Identity);
        ToolRecord tool = Assert.Single(manifest.Tools);
        Assert.Equal(Sha256File(bed.ToolFile), tool.Sha256);
        // Every request id the fake ARM sent is in the manifest; the Blob service's too.
        HashSet<string> recorded = [.. manifest.RequestIds.Select(r => r.RequestId)];
        Assert.All(bed.Arm.ResponseIds, id => Assert.Contains(id, recorded));
        // The Completed manifest is also beside the evidence, byte for byte the local one.
        string besideEvidence = Path.ChangeExtension(evidence.Name, null) + ".custody.json";
        Assert.Equal(File.ReadAllBytes(result.ManifestPath), (await bed.ContainerClient.GetBlobClient(besideEvidence).DownloadContentAsync()).Value.Content.ToArray());
        Assert.Contains(manifest.RequestIds, r => r.Service == "blob" && r.Operation.StartsWith("GET /devstoreaccount1/" + bed.Container));
        Assert.Contains(manifest.RequestIds, r => r.Service == "arm" && r.Operation.Contains("/runCommands/"));

        (int exit, string stdout, string stderr) = CliRunner.Run(null, null, "info", evidence.LocalPath!, "--output", "json");
        Assert.True(exit == 0, stderr);
        Assert.Contains("avml", stdout, StringComparison.OrdinalIgnoreCase);
    }

    [SkippableFact]
    public async Task Secrets_OnlyInProtectedParameters_NeverInTheScript_AndTheRunCommandIsDeleted()
    {
        string fixture = Fixture.Require("memory.avml");
        await using var bed = new AzureTestBed(azurite, fixture);
        DateTimeOffset before = DateTimeOffset.UtcNow;

        CaptureResult result = await bed.Connector(bed.Request(download: false)).CaptureAsync(CancellationToken.None);
        Assert.Equal(CustodyStatus.Completed, result.Manifest.Status);
        Assert.Null(result.Manifest.Evidence[0].LocalPath);
        Assert.Empty(Directory.GetFiles(bed.OutDir, "*.partial*", SearchOption.AllDirectories));

        // The recorded PUT of the managed run command: SAS URLs in protectedParameters only, none in the script or in
        // plain parameters; asyncExecution and timeoutInSeconds = the capture's command timeout (3 minutes here).
        ArmCall put = bed.Arm.Calls.Single(c => c.Method == "PUT" && c.Path.Contains("/runCommands/", StringComparison.Ordinal));
        Assert.Matches("^/subscriptions/[^/]+/resourceGroups/rg-ir/providers/Microsoft.Compute/virtualMachines/vm1/runCommands/cloudmem-[0-9a-f]{16}$", put.Path);
        JsonElement props = JsonDocument.Parse(put.Body).RootElement.GetProperty("properties");
        Assert.True(props.GetProperty("asyncExecution").GetBoolean());
        Assert.Equal(180, props.GetProperty("timeoutInSeconds").GetInt32());
        Assert.False(props.TryGetProperty("parameters", out JsonElement plain) && plain.GetArrayLength() > 0);
        Dictionary<string, string> protectedParameters = props.GetProperty("protectedParameters").EnumerateArray()
            .ToDictionary(p => p.GetProperty("name").GetString()!, p => p.GetProperty("value").GetString()!);
        Assert.Equal(["CLOUDMEM_TOOL_URL", "CLOUDMEM_UPLOAD_URL"], protectedParameters.Keys.Order());
        string script = props.GetProperty("source").GetProperty("script").GetString()!;
        Assert.Equal(script, Assert.Single(bed.Arm.Scripts));
        Assert.Empty(SasUrl().Matches(script));
        Assert.DoesNotContain("sig=", script);
        var upload = new Uri(protectedParameters["CLOUDMEM_UPLOAD_URL"]);
        var toolUrl = new Uri(protectedParameters["CLOUDMEM_TOOL_URL"]);
        var query = HttpUtility.ParseQueryString(upload.Query);
        // The same permission string on azurite as on Azure: "w" (Put Block / Put Block List write a block list).
        Assert.Equal("w", query["sp"]);
        Assert.Equal("b", query["sr"]);
        Assert.Equal($"/{AzuriteHost.Account}/{bed.Container}/{result.Manifest.Evidence[0].Name}", Uri.UnescapeDataString(upload.AbsolutePath));
        DateTimeOffset expiry = DateTimeOffset.Parse(query["se"]!, System.Globalization.CultureInfo.InvariantCulture);
        Assert.InRange(expiry, before, DateTimeOffset.UtcNow + TimeSpan.FromMinutes(3) + TimeSpan.FromMinutes(11));
        var toolQuery = HttpUtility.ParseQueryString(toolUrl.Query);
        Assert.Equal("r", toolQuery["sp"]);
        Assert.Equal("b", toolQuery["sr"]);
        // The guest got them (as environment variables, like Linux managed Run Command) and used them.
        Assert.Equal(protectedParameters["CLOUDMEM_UPLOAD_URL"], bed.Arm.LastGuestParameters!["CLOUDMEM_UPLOAD_URL"]);

        // No secret anywhere else: not in the manifest, the log, any other ARM request or any ARM response we read.
        string[] secrets = [query["sig"]!, toolQuery["sig"]!, AzuriteHost.Key, .. bed.Credential.Issued];
        string manifestText = File.ReadAllText(result.ManifestPath);
        string logText = bed.LogText.ToString();
        string everythingElse = string.Join("\n", bed.Arm.Calls.Where(c => c != put).Select(c => c.Path + c.Query + c.Body));
        foreach (string secret in secrets)
        {
            Assert.DoesNotContain(secret, manifestText);
            Assert.DoesNotContain(secret, logText);
            Assert.DoesNotContain(secret, everythingElse);
            Assert.DoesNotContain(secret, script);
            Assert.DoesNotContain(Uri.EscapeDataString(secret), manifestText);
            Assert.DoesNotContain(Uri.EscapeDataString(secret), logText);
        }
        Assert.False(bed.Scrubber.ContainsSecret(manifestText));
        Assert.Contains("SAS 'w' for blob IR-42/vm1-", logText, StringComparison.Ordinal);
        Assert.Contains("SAS 'r' for blob cloudmem-tools/", logText, StringComparison.Ordinal);
        // Polled through the instance view, then deleted.
        Assert.Contains(bed.Arm.Calls, c => c.Method == "GET" && c.Path == put.Path && c.Query.Contains("$expand=instanceView", StringComparison.Ordinal));
        Assert.Equal(put.Path[(put.Path.LastIndexOf('/') + 1)..], Assert.Single(bed.Arm.DeletedRunCommands));
        Assert.Contains(result.Manifest.Steps, s => s.Action == "delete run command" && !s.Detail.Contains("FAILED", StringComparison.Ordinal));
    }

    [SkippableTheory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task DroppedConnection_ResumesWithoutCorruptingEvidence(bool cutUpload)
    {
        string fixture = Fixture.Require("memory.avml");
        // The proxy sits between everyone (our SDK and the guest's curl) and azurite; it cuts one connection after
        // 2 MiB up (inside the guest's first 4 MiB Put Block) or 6 MiB down (our read back) in one direction.
        using var proxy = new FlakyProxy(azurite.Port, cutUpload ? 2 << 20 : 6 << 20, cutUpload);
        await using var bed = new AzureTestBed(azurite, fixture, containerPort: proxy.Port);

        CaptureResult result = await bed.Connector(bed.Request(download: true)).CaptureAsync(CancellationToken.None);

        Assert.Equal(1, proxy.Cuts);
        Assert.Equal(CustodyStatus.Completed, result.Manifest.Status);
        string fixtureSha = Sha256File(fixture);
        Assert.Equal(fixtureSha, result.Manifest.Evidence[0].Sha256);
        Assert.Equal(fixtureSha, await Sha256Blob(bed, result.Manifest.Evidence[0].Name));
        Assert.Equal(fixtureSha, Sha256File(result.Manifest.Evidence[0].LocalPath!));
    }

    [SkippableFact]
    public async Task RunCommandThatNeverFinishes_TimesOutWithAClearError_AndAFailedManifest()
    {
        string fixture = Fixture.Require("memory.lime");
        await using var bed = new AzureTestBed(azurite, fixture);
        bed.Arm.RunCommandNeverFinishes = true;

        var error = await Assert.ThrowsAsync<CaptureTimeoutException>(
            () => bed.Connector(bed.Request(commandTimeout: TimeSpan.FromSeconds(2))).CaptureAsync(CancellationToken.None));

        // The poll budget is the run command's own timeoutInSeconds plus the status margin, no more.
        Assert.Matches(@"^Run Command cloudmem-[0-9a-f]{16} on vm1 did not finish within 3 s \(last state: Running\)$", error.Message);
        string manifestPath = Assert.Single(Directory.GetFiles(bed.OutDir, "*.custody.json"));
        CustodyManifest manifest = CustodyManifest.Read(manifestPath);
        Assert.Equal(CustodyStatus.Failed, manifest.Status);
        Assert.Equal(error.Message, manifest.Error);
        Assert.Empty(manifest.Evidence);
        Assert.Contains(manifest.RequestIds, r => r.Operation.StartsWith("GET /subscriptions/", StringComparison.Ordinal) && r.Operation.Contains("/runCommands/", StringComparison.Ordinal));
        Assert.Single(bed.Arm.DeletedRunCommands);
    }

    [SkippableFact]
    public async Task Plan_CallsNoMutatingApi_AndShowsChecksAndSteps()
    {
        string fixture = Fixture.Require("memory.lime");
        await using var bed = new AzureTestBed(azurite, fixture);

        CapturePlan plan = await bed.Connector(bed.Request(plan: true)).PlanAsync(CancellationToken.None);

        Assert.True(plan.Ready, plan.ToText());
        Assert.Empty(bed.Arm.MutatingCalls);
        Assert.Empty(bed.ContainerClient.GetBlobs());
        Assert.Contains(plan.Checks, c => c.Name == "vm agent" && c.Reason.Contains("Ready", StringComparison.Ordinal));
        Assert.Contains(plan.Steps, s => s.Action == "run command" && s.Mutating);
        string text = plan.ToText();
        Assert.Contains("[ok] power state: PowerState/running", text);
        Assert.DoesNotContain("sig=", text);
    }

    [SkippableTheory]
    [InlineData("deallocated", "Ready", "power state")]
    [InlineData("running", "Not Ready", "vm agent")]
    public async Task Preflight_RefusesAVmThatCannotRunCommands_WithoutChangingAnything(string power, string agent, string failedCheck)
    {
        string fixture = Fixture.Require("memory.lime");
        await using var bed = new AzureTestBed(azurite, fixture, power: power, agent: agent);

        var error = await Assert.ThrowsAsync<CaptureException>(() => bed.Connector(bed.Request()).CaptureAsync(CancellationToken.None));

        Assert.Contains($"preflight '{failedCheck}' failed", error.Message);
        Assert.DoesNotContain('\n', error.Message);
        Assert.Empty(bed.Arm.MutatingCalls);
        // Nothing but the Failed manifest, uploaded beside where the evidence would have been (every outcome is kept).
        BlobItem only = Assert.Single(bed.ContainerClient.GetBlobs());
        Assert.Matches(@"^IR-42/vm1-\d{8}T\d{6}Z\.custody\.json$", only.Name);
        using JsonDocument manifest = JsonDocument.Parse((await bed.ContainerClient.GetBlobClient(only.Name).DownloadContentAsync()).Value.Content.ToString());
        Assert.Equal("Failed", manifest.RootElement.GetProperty("status").GetString());
    }

    [SkippableFact]
    public async Task Hibernate_RefusedWhenTheVmHasNoHibernationCapability()
    {
        string fixture = Fixture.Require("memory.lime");
        await using var bed = new AzureTestBed(azurite, fixture, hibernationEnabled: false);

        var error = await Assert.ThrowsAsync<CaptureException>(
            () => bed.Connector(bed.Request(), AzureCaptureMethod.Hibernate).CaptureAsync(CancellationToken.None));

        Assert.Contains("preflight 'hibernation enabled' failed", error.Message);
        Assert.Empty(bed.Arm.MutatingCalls);
    }

    [GeneratedRegex(@"https?://[^'""\s]+\?[^'""\s]+")]
    private static partial Regex SasUrl();
}
