using Azure.Core.Pipeline;
using CloudMem.Connectors.Azure;
using CloudMem.Connectors.Core;
using CloudMem.Tests.Support;

namespace CloudMem.Tests.Connectors.Azure;

/// <summary>isolate azure: an isolation NSG on every NIC through the real ArmClient against the HTTPS fake ARM.</summary>
public sealed class AzureIsolateTests
{
    private const string Sub = AzureTestBed.Subscription;

    [Fact]
    public async Task Isolate_AttachesTheNsgToEveryNic_RecordingThePreviousOne()
    {
        await using var arm = new FakeArm();
        string oldNsg = arm.AddNsg(Sub, "rg-ir", "web");
        string vm = arm.AddVm(Sub, "rg-ir", "vm1", nics: 2, nsgOnNics: oldNsg);
        string isolation = arm.AddNsg(Sub, "rg-ir", "isolate");
        using var temp = new TempDir();
        var scrubber = new SecretScrubber();
        var credential = new FakeTokenCredential();
        var isolator = new AzureIsolator(AzureTarget.ParseVmId(vm), AzureTarget.ParseNsgId(isolation), credential,
            new AzureArmSettings(arm.Endpoint, "https://management.azure.com", new HttpClientTransport(arm.CreateHandler())),
            new CaptureRequest { CaseId = "IR-7", OutputDirectory = temp.Path }, new CaptureLog(scrubber));

        CapturePlan plan = await isolator.PlanAsync(CancellationToken.None);
        Assert.True(plan.Ready, plan.ToText());
        Assert.Empty(arm.MutatingCalls);
        Assert.Equal(2, plan.Steps.Count(s => s.Action == "attach nsg"));

        CaptureResult result = await isolator.IsolateAsync(CancellationToken.None);

        Assert.Equal(CustodyStatus.Completed, result.Manifest.Status);
        Assert.Equal("isolate-nsg", result.Manifest.Method);
        Assert.Equal(2, result.Manifest.Resources.Count);
        Assert.All(result.Manifest.Resources, r => Assert.Contains($"networkSecurityGroup {oldNsg} -> {isolation}", r.Detail));
        for (int i = 0; i < 2; i++)
        {
            string nic = $"/subscriptions/{Sub}/resourceGroups/rg-ir/providers/Microsoft.Network/networkInterfaces/vm1-nic{i}";
            Assert.Equal(isolation, arm.Resource(nic)!["properties"]!["networkSecurityGroup"]!["id"]!.GetValue<string>());
        }
        // One PUT of the isolation NSG (flushConnection: true, so flows it had allowed are re-evaluated), one per NIC.
        Assert.Equal(3, arm.MutatingCalls.Count(c => c.Method == "PUT"));
        ArmCall nsgPut = arm.MutatingCalls.First(c => c.Method == "PUT");
        Assert.Equal(isolation, nsgPut.Path);
        Assert.True(System.Text.Json.JsonDocument.Parse(nsgPut.Body).RootElement.GetProperty("properties").GetProperty("flushConnection").GetBoolean());
        Assert.True(arm.Resource(isolation)!["properties"]!["flushConnection"]!.GetValue<bool>());
        Assert.Contains(result.Manifest.Steps, s => s.Action == "flush connections" && s.Detail.StartsWith("flushConnection enabled on", StringComparison.Ordinal));
        Assert.DoesNotContain(arm.MutatingCalls, c => c.Method == "PATCH");
        HashSet<string> recorded = [.. result.Manifest.RequestIds.Select(r => r.RequestId)];
        Assert.All(arm.Calls.Zip(arm.ResponseIds.Where((_, i) => i % 2 == 0)), pair => Assert.Contains(pair.Second, recorded));
        Assert.True(File.Exists(result.ManifestPath));
        foreach (string token in credential.Issued)
        {
            Assert.DoesNotContain(token, File.ReadAllText(result.ManifestPath));
        }
    }

    [Fact]
    public async Task Isolate_OptIn_DetachesPublicIps_AndRemovesTheManagedIdentity_RecordingBoth()
    {
        await using var arm = new FakeArm();
        string vm = arm.AddVm(Sub, "rg-ir", "vm1", nics: 1);
        string nic = $"/subscriptions/{Sub}/resourceGroups/rg-ir/providers/Microsoft.Network/networkInterfaces/vm1-nic0";
        string publicIp = $"/subscriptions/{Sub}/resourceGroups/rg-ir/providers/Microsoft.Network/publicIPAddresses/vm1-pip";
        string userAssigned = $"/subscriptions/{Sub}/resourceGroups/rg-ir/providers/Microsoft.ManagedIdentity/userAssignedIdentities/web-id";
        arm.AddPublicIp(nic, publicIp);
        arm.AddIdentity(vm, userAssigned);
        string isolation = arm.AddNsg(Sub, "rg-ir", "isolate");
        arm.Resource(isolation)!["properties"]!["flushConnection"] = true;
        using var temp = new TempDir();
        var isolator = new AzureIsolator(AzureTarget.ParseVmId(vm), AzureTarget.ParseNsgId(isolation), new FakeTokenCredential(),
            new AzureArmSettings(arm.Endpoint, "https://management.azure.com", new HttpClientTransport(arm.CreateHandler())),
            new CaptureRequest { CaseId = "IR-8", OutputDirectory = temp.Path }, new CaptureLog(new SecretScrubber()),
            new AzureIsolationExtras(RemovePublicIps: true, RemoveManagedIdentity: true));

        CaptureResult result = await isolator.IsolateAsync(CancellationToken.None);

        Assert.Equal(CustodyStatus.Completed, result.Manifest.Status);
        // flushConnection was already on: the NSG is not written again.
        Assert.DoesNotContain(arm.MutatingCalls, c => c.Path == isolation);
        Assert.Contains(result.Manifest.Steps, s => s.Detail.StartsWith("flushConnection already enabled", StringComparison.Ordinal));
        Assert.Null(arm.Resource(nic)!["properties"]!["ipConfigurations"]![0]!["properties"]!["publicIPAddress"]);
        Assert.Equal(isolation, arm.Resource(nic)!["properties"]!["networkSecurityGroup"]!["id"]!.GetValue<string>());
        Assert.Contains(result.Manifest.Resources, r => r.Id == nic && r.Detail.Contains($"publicIPAddress {publicIp} detached", StringComparison.Ordinal));
        ArmCall patch = Assert.Single(arm.MutatingCalls, c => c.Method == "PATCH");
        Assert.Equal(vm, patch.Path);
        Assert.Equal("None", System.Text.Json.JsonDocument.Parse(patch.Body).RootElement.GetProperty("identity").GetProperty("type").GetString());
        Assert.Null(arm.Resource(vm)!["identity"]);
        ResourceRecord identity = Assert.Single(result.Manifest.Resources, r => r.Kind == "virtualMachine");
        Assert.Contains("SystemAssigned", identity.Detail, StringComparison.Ordinal);
        Assert.Contains(userAssigned, identity.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Isolate_RefusesAnNsgInAnotherRegion_WithoutChangingAnything()
    {
        await using var arm = new FakeArm();
        string vm = arm.AddVm(Sub, "rg-ir", "vm1");
        string isolation = arm.AddNsg(Sub, "rg-ir", "isolate");
        arm.Resource(isolation)!["location"] = "eastus";
        using var temp = new TempDir();
        var isolator = new AzureIsolator(AzureTarget.ParseVmId(vm), AzureTarget.ParseNsgId(isolation), new FakeTokenCredential(),
            new AzureArmSettings(arm.Endpoint, "https://management.azure.com", new HttpClientTransport(arm.CreateHandler())),
            new CaptureRequest { OutputDirectory = temp.Path }, new CaptureLog(new SecretScrubber()));

        var error = await Assert.ThrowsAsync<CaptureException>(() => isolator.IsolateAsync(CancellationToken.None));

        Assert.Contains("preflight 'isolation nsg' failed", error.Message);
        Assert.Contains("must be in the NIC's region", error.Message);
        Assert.Empty(arm.MutatingCalls);
        Assert.Equal(CustodyStatus.Failed, CustodyManifest.Read(Directory.GetFiles(temp.Path, "*.custody.json").Single()).Status);
    }
}
