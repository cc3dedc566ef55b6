using Azure.Core.Pipeline;
using Azure.Storage.Blobs;
using CloudMem.Connectors.Azure;

namespace CloudMem.Tests.Connectors.Azure;

public sealed class AzureProbeTests
{
    private const string Sub = "6f1c2d3e-0a1b-4c5d-8e9f-00112233aabb";
    [SkippableFact]
    public async Task Probe()
    {
        await using var arm = new FakeArm();
        string vmId = arm.AddVm(Sub, "rg1", "vm1");
        var credential = new FakeTokenCredential();
        var client = new AzureArm(credential, Sub, new AzureArmSettings(arm.Endpoint, "https://management.azure.com", new HttpClientTransport(arm.CreateHandler())));
        AzureVmFacts facts = await client.DescribeAsync(AzureTarget.ParseVmId(vmId), default);
        Console.WriteLine(facts);
        var op = await client.StartRunCommandAsync(AzureTarget.ParseVmId(vmId), "RunShellScript", ["echo hello", "echo CLOUDMEM_SIZE=5"], default);
        while (!op.HasCompleted)
        {
            await op.UpdateStatusAsync();
            await Task.Delay(50);
        }
        Console.WriteLine("VALUE " + string.Join("|", op.Value.Value.Select(v => v.Code + ":" + v.Message)));
        foreach (var r in client.Log.Records)
        {
            Console.WriteLine(r);
        }
        foreach (var c in arm.Calls)
        {
            Console.WriteLine($"{c.Method} {c.Path}{c.Query}");
        }
        string? prev = await client.SetNicNsgAsync(facts.NicIds[0], arm.AddNsg(Sub, "rg1", "iso"), default);
        Console.WriteLine("prev " + prev + " now " + arm.Resource(facts.NicIds[0]));

        using var azurite = AzuriteHost.Start();
        var service = new BlobServiceClient(azurite.ServiceUri, azurite.Credential);
        await service.GetBlobContainerClient("evidence").CreateAsync();
        var issuer = new BlobSasIssuer(service, azurite.Credential);
        ScopedSas sas = await issuer.CreateOnlyAsync("evidence", "case/x.avml", TimeSpan.FromMinutes(30), default);
        Console.WriteLine(sas + " " + sas.Uri);
        var psi = new System.Diagnostics.ProcessStartInfo("sh") { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add($"set -x; echo hello > /tmp/blk; curl -sS -i -X PUT -H 'x-ms-version: 2021-08-06' --data-binary @/tmp/blk '{sas.Uri}&comp=block&blockid=QUFB'; curl -sS -i -X PUT -H 'x-ms-version: 2021-08-06' --data-binary '<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList><Latest>QUFB</Latest></BlockList>' '{sas.Uri}&comp=blocklist'; curl -sS -i -X PUT -H 'x-ms-version: 2021-08-06' --data-binary '<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList><Latest>QUFB</Latest></BlockList>' '{sas.Uri}&comp=blocklist'; curl -sS -i '{sas.Uri}'");
        var p = System.Diagnostics.Process.Start(psi)!;
        Console.WriteLine(p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd());
        var props = await service.GetBlobContainerClient("evidence").GetBlobClient("case/x.avml").GetPropertiesAsync();
        Console.WriteLine("size " + props.Value.ContentLength);
    }
}
