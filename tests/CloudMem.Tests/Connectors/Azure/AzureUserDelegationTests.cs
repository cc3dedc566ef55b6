using System.Security.Cryptography;
using System.Text.RegularExpressions;
using System.Web;
using CloudMem.Connectors.Core;
using CloudMem.Tests.Support;

namespace CloudMem.Tests.Connectors.Azure;

/// <summary>azurite over TLS with --oauth basic.</summary>
public sealed class HttpsAzurite() : IDisposable
{
    public AzuriteHost Host { get; } = new(https: true);

    public void Dispose() => Host.Dispose();
}

/// <summary>
/// The production path: a TokenCredential (no account key) -> GetUserDelegationKey -> user delegation SAS, against
/// azurite over TLS with --oauth basic; the guest's curl trusts the test certificate through CURL_CA_BUNDLE.
/// </summary>
public sealed class AzureUserDelegationTests(HttpsAzurite azurite) : IClassFixture<HttpsAzurite>
{
    [SkippableFact]
    public async Task TokenCredential_UserDelegationSas_EndToEnd()
    {
        string fixture = Fixture.Require("memory.avml");
        await using var bed = new AzureTestBed(azurite.Host, fixture);

        CaptureResult result = await bed.Connector(bed.Request(download: false)).CaptureAsync(CancellationToken.None);

        Assert.Equal(CustodyStatus.Completed, result.Manifest.Status);
        using (FileStream file = File.OpenRead(fixture))
        {
            Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(file)), result.Manifest.Evidence[0].Sha256);
        }
        Assert.Single(bed.Arm.Scripts);
        var query = HttpUtility.ParseQueryString(new Uri(bed.Arm.LastGuestParameters!["CLOUDMEM_UPLOAD_URL"]).Query);
        Assert.Equal("w", query["sp"]);
        Assert.Equal("00000000-0000-0000-0000-00000000c10d", query["skoid"]);
        Assert.Equal("b", query["sr"]);
        Assert.Equal("https", query["spr"]);
        // azurite answers Get User Delegation Key without x-ms-request-id: the recorder logs that instead of an id.
        Assert.Contains("blob POST /devstoreaccount1", bed.LogText.ToString());
        Assert.Contains(result.Manifest.Steps, s => s.Detail.StartsWith("user-delegation SAS", StringComparison.Ordinal));
        string manifest = File.ReadAllText(result.ManifestPath);
        Assert.DoesNotContain(query["sig"]!, manifest);
        Assert.DoesNotContain(query["sig"]!, bed.LogText.ToString());
        Assert.All(bed.Credential.Issued, t => Assert.DoesNotContain(t, manifest + bed.LogText));
    }
}
