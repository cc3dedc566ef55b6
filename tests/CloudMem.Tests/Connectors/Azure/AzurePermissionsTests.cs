using System.Text.RegularExpressions;
using CloudMem.Connectors.Azure;
using CloudMem.Connectors.Core;
using CloudMem.Tests.Support;

namespace CloudMem.Tests.Connectors.Azure;

/// <summary>
/// Least privilege for Azure: <see cref="AzureCapturePermissions"/> covers every request a whole production-path capture
/// sends (token credential, user delegation SAS, azurite over TLS, the fake ARM), and the Bicep template's two custom
/// roles grant exactly its actions and data actions.
/// </summary>
public sealed partial class AzurePermissionsTests(HttpsAzurite azurite) : IClassFixture<HttpsAzurite>
{
    private static string Bicep => File.ReadAllText(Path.Combine(Fixture.RepoRoot, "infra", "azure", "cloudmem-responder.bicep"));

    /// <summary>The quoted strings of the list that follows the marker comment <c>// cloudmem-permissions: NAME</c>.</summary>
    private static string[] BicepList(string name)
    {
        Match list = Regex.Match(Bicep, @"// cloudmem-permissions: " + Regex.Escape(name) + @"\s*\n\s*\w+: \[(?<items>[^\]]*)\]");
        Assert.True(list.Success, $"no list after '// cloudmem-permissions: {name}' in the Bicep template");
        return [.. Regex.Matches(list.Groups["items"].Value, "'([^']+)'").Select(m => m.Groups[1].Value).Order(StringComparer.Ordinal)];
    }

    [Fact]
    public void BicepRoles_GrantExactlyTheTable()
    {
        string[] actions = [.. AzureCapturePermissions.Actions(AzurePermissionKind.Action, AzureCapturePermissions.Capture, AzureCapturePermissions.DiskSnapshots)];
        Assert.Equal(actions.Where(a => a.StartsWith("Microsoft.Compute/", StringComparison.Ordinal)), BicepList("capture actions"));
        Assert.Equal(AzureCapturePermissions.Actions(AzurePermissionKind.Action, AzureCapturePermissions.Hibernation), BicepList("hibernation actions"));
        Assert.Equal(actions.Where(a => a.StartsWith("Microsoft.Storage/", StringComparison.Ordinal)), BicepList("evidence actions"));
        Assert.Equal(AzureCapturePermissions.Actions(AzurePermissionKind.DataAction), BicepList("evidence dataActions"));
        // No built-in broad role is assigned any more (VM Contributor, Storage Blob Data Contributor).
        Assert.DoesNotContain("9980e02c-c2be-4d73-94e8-173b1dc7cf3c", Bicep);
        Assert.DoesNotContain("ba92f5b4-2d11-453d-a403-e96b0029c9fe", Bicep);
        // The only delete is of our own run command resource (its stored protected parameters go with it): no blob,
        // container or VM delete.
        Assert.Equal(["Microsoft.Compute/virtualMachines/runCommands/delete"], System.Text.RegularExpressions.Regex.Matches(Bicep, @"'([A-Za-z./]+/delete)'").Select(m => m.Groups[1].Value));
        Assert.Contains("state: lockImmutability ? 'Locked' : 'Unlocked'", Bicep);
        Assert.Matches(@"param lockImmutability bool = true", Bicep);
    }

    [SkippableFact]
    public async Task EveryRequestOfAWholeCapture_IsCoveredByTheTable()
    {
        string fixture = Fixture.Require("memory.avml");
        await using var bed = new AzureTestBed(azurite.Host, fixture);

        CaptureResult result = await bed.Connector(bed.Request(download: false)).CaptureAsync(CancellationToken.None);
        Assert.Equal(CustodyStatus.Completed, result.Manifest.Status);

        // Every request as the request log names it: with an id in the manifest, without one in the log.
        var requests = new List<(string Service, string Method, string Path)>();
        foreach (RequestIdRecord record in result.Manifest.RequestIds.Where(r => r.Service is "arm" or "blob"))
        {
            Match m = Request().Match(record.Operation);
            Assert.True(m.Success, record.Operation);
            requests.Add((record.Service, m.Groups["method"].Value, m.Groups["path"].Value));
        }
        foreach (Match m in LoggedRequest().Matches(bed.LogText.ToString()))
        {
            requests.Add((m.Groups["service"].Value, m.Groups["method"].Value, m.Groups["path"].Value));
        }
        Assert.Contains(requests, r => r.Service == "blob" && r.Method == "POST");
        var used = new HashSet<AzurePermission>();
        foreach ((string service, string method, string path) in requests)
        {
            // azurite addresses the account in the path; on Azure the account is the host.
            string relative = service == "blob" && path.StartsWith("/" + AzuriteHost.Account, StringComparison.Ordinal) ? path[(AzuriteHost.Account.Length + 1)..] : path;
            AzurePermission? permission = AzureCapturePermissions.For(service, method, relative);
            Assert.True(permission is not null, $"{service} {method} {path}: no entry in AzureCapturePermissions");
            used.Add(permission);
        }
        // And the table holds nothing the capture does not use.
        Assert.Equal(AzureCapturePermissions.Capture.Count, used.Count);
    }

    [GeneratedRegex(@"^(?<method>[A-Z]+) (?<path>\S*) -> \d+$")]
    private static partial Regex Request();

    [GeneratedRegex(@"(?<service>arm|blob) (?<method>[A-Z]+) (?<path>\S*) -> \d+: the response carried no request id")]
    private static partial Regex LoggedRequest();
}
