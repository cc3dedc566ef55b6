using System.Text;
using System.Text.Json.Nodes;
using CloudMem.Connectors.Core;
using CloudMem.Connectors.Triggers;
using CloudMem.Tests.Connectors.Azure;
using CloudMem.Tests.Support;

namespace CloudMem.Tests.Connectors.Triggers;

/// <summary>The custom handler drives a whole real capture for a Defender alert: fake ARM (Run Command runs the guest script) + azurite.</summary>
public sealed class FunctionHandlerAzureCaptureTests(AzuriteHost azurite) : IClassFixture<AzuriteHost>
{
    [SkippableFact]
    public async Task Defender_alert_through_the_function_handler_captures_and_verifies()
    {
        string fixture = Fixture.Require("memory.avml");
        await using var bed = new AzureTestBed(azurite, fixture);
        string alert = File.ReadAllText(AlertEventParserTests.Event("defender-alert-high.json"))
            .Replace("/subscriptions/5a7c9e11-2b4d-4f60-8a1c-3e5f7a9b0c2d/resourceGroups/prod-web/providers/Microsoft.Compute/virtualMachines/web-vm-07", bed.VmId, StringComparison.Ordinal);
        var target = new AzureResponderTarget(bed.ContainerUrl, () => bed.Credential, azurite.Https ? null : azurite.Credential, bed.ArmSettings,
            bed.ToolFile, "0.14.0 (test stand-in)", CloudMem.Cli.Commands.CaptureCli.ParserOpener, azurite.ClientOptions());
        var responder = new AlertResponder(new TriggerPolicy(), [target], bed.Log)
        {
            OutputDirectory = bed.OutDir,
            Timeouts = new CaptureTimeouts { Command = TimeSpan.FromMinutes(3), Operation = TimeSpan.FromMinutes(1), PollInterval = TimeSpan.FromMilliseconds(100) },
        };
        int port = Emulators.FreePort();
        await using var server = new FunctionHandlerServer(port, responder.RespondAsync, bed.Log);
        using var stop = new CancellationTokenSource(TimeSpan.FromMinutes(4));
        Task serving = server.RunAsync(stop.Token);
        using var http = new HttpClient { Timeout = TimeSpan.FromMinutes(3) };
        var invocation = new JsonObject { ["Data"] = new JsonObject { ["eventGridEvent"] = new JsonObject { ["eventType"] = "CloudMem.DefenderAlert", ["data"] = JsonNode.Parse(alert) } } };

        using HttpResponseMessage response = await http.PostAsync($"http://127.0.0.1:{port}/respond", new StringContent(invocation.ToJsonString(), Encoding.UTF8, "application/json"));
        string text = await response.Content.ReadAsStringAsync();

        Assert.True(response.IsSuccessStatusCode, text + "\n" + bed.LogText);
        JsonNode answer = JsonNode.Parse(text)!;
        Assert.Equal(201, (int)answer["Outputs"]!["res"]!["statusCode"]!);
        Assert.Equal("Captured", (string)answer["ReturnValue"]!["status"]!);
        CustodyManifest manifest = CustodyManifest.Read((string)answer["ReturnValue"]!["manifest"]!);
        Assert.Equal(CustodyStatus.Completed, manifest.Status);
        Assert.Equal(new TriggerRecord("Defender", "2517412345678901234_8c1f2e3d-4b5a-4697-8a7b-6c5d4e3f2a1b"), manifest.Trigger);
        Assert.Equal("defender-2517412345678901234_8c1f2e3d-4b5a-4697-8a7b-6c5d4e3f2a1b", manifest.CaseId);
        EvidenceRecord evidence = Assert.Single(manifest.Evidence);
        Assert.True(evidence.Verified);
        Assert.StartsWith("AVML", evidence.OpenedAs, StringComparison.Ordinal);
        Assert.Equal(new FileInfo(fixture).Length, evidence.SizeBytes);
        // A full ARM id and a long alert-derived case id still give a file name the file system accepts.
        Assert.True(Path.GetFileName((string)answer["ReturnValue"]!["manifest"]!).Length < 200);
        stop.Cancel();
        await serving;
    }
}
