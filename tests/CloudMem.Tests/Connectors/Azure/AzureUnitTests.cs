using System.Web;
using Azure.Storage;
using Azure.Storage.Blobs;
using CloudMem.Connectors.Azure;
using CloudMem.Connectors.Core;

namespace CloudMem.Tests.Connectors.Azure;

/// <summary>Azure connector pieces that need no server: ids, URLs, SAS scope, guest scripts and their output.</summary>
public sealed class AzureUnitTests
{
    private const string Vm = "/subscriptions/6f1c2d3e-0a1b-4c5d-8e9f-00112233aabb/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1";

    [Theory]
    [InlineData("vm1", "is not an Azure resource id")]
    [InlineData("/subscriptions/6f1c2d3e-0a1b-4c5d-8e9f-00112233aabb/resourceGroups/rg/providers/Microsoft.Network/networkInterfaces/n", "is not a virtual machine id")]
    [InlineData("/subscriptions/not-a-guid/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1", "is not an Azure resource id")]
    public void VmId_Refused_WithOneLine(string text, string expected)
    {
        var error = Assert.Throws<ArgumentException>(() => AzureTarget.ParseVmId(text));
        Assert.Contains(expected, error.Message);
        Assert.DoesNotContain('\n', error.Message);
    }

    [Theory]
    [InlineData("https://acct.blob.core.windows.net/evidence", "acct", "evidence")]
    [InlineData("http://127.0.0.1:10000/devstoreaccount1/evidence", "devstoreaccount1", "evidence")]
    public void ContainerUrl_Parsed(string url, string account, string container)
        => Assert.Equal((account, container), AzureTarget.ParseContainerUrl(new Uri(url)));

    [Theory]
    [InlineData("https://acct.blob.core.windows.net/evidence?sv=2024&sig=abc", "must not carry a query")]
    [InlineData("https://acct.blob.core.windows.net/a/b", "must be https://ACCOUNT.blob.core.windows.net/CONTAINER")]
    [InlineData("ftp://acct.blob.core.windows.net/evidence", "must be an http(s) URL")]
    public void ContainerUrl_Refused(string url, string expected)
        => Assert.Contains(expected, Assert.Throws<ArgumentException>(() => AzureTarget.ParseContainerUrl(new Uri(url))).Message);

    [Fact]
    public async Task Sas_ForBlockUpload_IsWriteOnly_OneBlob_HttpsOnly_AndBounded()
    {
        var key = new StorageSharedKeyCredential("acct", Convert.ToBase64String(new byte[64]));
        var issuer = new BlobSasIssuer(new BlobServiceClient(new Uri("https://acct.blob.core.windows.net"), key), key);
        DateTimeOffset before = DateTimeOffset.UtcNow;

        ScopedSas sas = await issuer.BlockUploadAsync("evidence", "IR-1/vm1.avml", TimeSpan.FromMinutes(70), CancellationToken.None);

        var query = HttpUtility.ParseQueryString(sas.Uri.Query);
        // Put Block / Put Block List write a block list: "w" in Microsoft's SAS permission table; the same on azurite.
        Assert.Equal("w", query["sp"]);
        Assert.Equal("b", query["sr"]);
        Assert.Equal("https", query["spr"]);
        Assert.Equal("/evidence/IR-1/vm1.avml", Uri.UnescapeDataString(sas.Uri.AbsolutePath));
        Assert.InRange(sas.ExpiresOn, before.AddMinutes(69), DateTimeOffset.UtcNow.AddMinutes(70));
        Assert.DoesNotContain(sas.Signature, sas.ToString());
        Assert.DoesNotContain("sig=", sas.ToString());
        Assert.Throws<ArgumentOutOfRangeException>(() => issuer.BlockUploadAsync("evidence", "x", TimeSpan.FromHours(7), CancellationToken.None).GetAwaiter().GetResult());
    }

    [Fact]
    public void WindowsScript_ChecksTheToolHash_StreamsWinPmemStdoutByBlocks_AndHoldsNoUrl()
    {
        string sha = new('a', 64);

        string script = AzureGuestScript.Build(AzureGuestTool.WinPmem, sha, "case IR-1");

        Assert.StartsWith("param([string]$CLOUDMEM_TOOL_URL, [string]$CLOUDMEM_UPLOAD_URL)", script);
        int check = script.IndexOf($"-ne '{sha}'", StringComparison.Ordinal);
        int run = script.IndexOf("ProcessStartInfo -ArgumentList @($tool, '-')", StringComparison.Ordinal);
        Assert.True(check > 0 && run > check, "the hash is checked before WinPmem runs, and WinPmem writes to stdout ('-')");
        Assert.Contains("comp=block&blockid=", script);
        Assert.Contains("comp=blocklist", script);
        Assert.Contains("'If-None-Match', '*'", script);
        // A WinPmem build that prints its status lines into the '-' stream is refused, not uploaded.
        Assert.Contains("GetBytes('The system time is: ')", script);
        Assert.DoesNotContain("memory.raw", script);
        Assert.DoesNotContain("://", script);
        Assert.DoesNotContain("sig=", script);
        Assert.Contains("\r\n", script);
        Assert.Throws<ArgumentException>(() => AzureGuestScript.ParameterValue(new Uri("https://a/b?x='y")));
        Assert.Throws<ArgumentException>(() => AzureGuestScript.Build(AzureGuestTool.Avml, "not-a-hash", "x"));
    }

    [Fact]
    public void LinuxScript_IsValidSh_AndHoldsNoUrl()
    {
        string script = AzureGuestScript.Build(AzureGuestTool.Avml, new string('b', 64), "case IR-1");
        using var temp = new Support.TempDir();
        string path = temp.File("guest.sh");
        File.WriteAllText(path, script);
        foreach (string shell in new[] { "sh", "bash" })
        {
            using var check = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo(shell, ["-n", path]) { RedirectStandardError = true })!;
            string errors = check.StandardError.ReadToEnd();
            check.WaitForExit();
            Assert.True(check.ExitCode == 0, $"{shell} -n: {errors}");
        }
        Assert.DoesNotContain("http", script, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("/var/tmp", script);
        Assert.Contains("\"$CLOUDMEM_UPLOAD_URL&comp=block&blockid=$enc\"", script);
    }

    [Fact]
    public void GuestOutput_Parsed()
    {
        GuestReport report = AzureGuestScript.ParseOutput(
            "CLOUDMEM_SCRATCH /dev/shm/cloudmem.1 tmpfs\nCLOUDMEM_PART 1 Y2xvdWRtZW0tMDAwMDAwMDE= 16777216\nCLOUDMEM_RESULT 47195325 " + new string('F', 64) + " 3\nCLOUDMEM_COMMITTED\n");
        Assert.Equal(new string('f', 64), report.Sha256);
        Assert.Equal(47195325, report.SizeBytes);
        Assert.Null(report.Error);
        Assert.Equal("staged tool SHA-256 mismatch", AzureGuestScript.ParseOutput("CLOUDMEM_ERROR staged tool SHA-256 mismatch\n").Error);
    }

    [Fact]
    public void OperatorIdentity_FromTokenClaims()
    {
        string token = new FakeTokenCredential().GetToken(new global::Azure.Core.TokenRequestContext(["https://management.azure.com/.default"]), default).Token;
        (string identity, string source) = AzureCaptureConnector.IdentityFromToken(token);
        Assert.Equal("oid 00000000-0000-0000-0000-00000000c10d", identity);
        Assert.Contains("tenant ab1f708d", source);
        Assert.Equal("unknown", AzureCaptureConnector.IdentityFromToken("opaque").Identity);
    }

    [Fact]
    public void Trigger_DefenderAlert()
        => Assert.Equal(new CaptureTrigger(TriggerKind.Defender, "2517538088322968242_abc"), CaptureTrigger.Parse("defender:2517538088322968242_abc"));
}
