using System.Collections;
using Amazon.Runtime;
using Amazon.S3;
using Amazon.S3.Model;
using Azure.Storage.Blobs;
using Azure.Storage.Blobs.Specialized;
using Azure.Storage.Sas;
using CloudMem.Connectors.Aws;
using CloudMem.Connectors.Azure;
using CloudMem.Tests.Connectors.Aws;
using CloudMem.Tests.Connectors.Azure;
using CloudMem.Tests.Support;

namespace CloudMem.Tests.Connectors;

/// <summary>
/// The Windows guest scripts (AWS: S3 multipart through presigned URLs; Azure: Put Block / Put Block List through a
/// SAS) executed for real by PowerShell 7 hosted in the test process, with a stand-in winpmem.exe streaming a slice of
/// the basic fixture's memory.raw to its standard output, against s3rver and azurite. The tests share the process-wide
/// TEMP variable, so they are one class (xunit runs a class's tests one at a time).
/// </summary>
public sealed class WindowsGuestScriptRunTests(AzuriteHost azurite) : IClassFixture<AzuriteHost>
{
    // 20 MiB and a bit: two full 8 MiB S3 parts and a short one; one full 16 MiB Azure block and a short one.
    private const long ImageBytes = (20L << 20) + 12345;
    private const long PartBytes = 8L << 20;
    private const long BoundBytes = 64L << 20;
    private const string Ticket = "{{ssm:/cloudmem/ticket/windows-run}}";

    [SkippableFact]
    public async Task Aws_script_streams_winpmem_stdout_into_s3_parts_that_rebuild_the_image()
    {
        using var guest = new PowerShellGuest(Fixture.Require("memory.raw"), ImageBytes);
        using var s3 = new S3Emulator(AwsHarness.Bucket, AwsHarness.AccessKey, AwsHarness.SecretKey);
        using AmazonS3Client client = S3Client(s3);
        (string script, string uploadId, string key) = await AwsScriptAsync(client, s3, guest, guest.ToolSha256);

        (List<string> lines, int? exit) = guest.Run(script);

        string output = string.Join('\n', lines);
        CloudMem.Connectors.Aws.GuestReport report = CloudMem.Connectors.Aws.GuestReport.Parse(output);
        Assert.True(report.Error is null && report.Sha256 is not null, output);
        report.Validate(PartBytes, BoundBytes);
        Assert.True(exit is null or 0, output);
        Assert.Equal(guest.ToolSha256, report.ToolSha256);
        Assert.Equal(guest.MemTotalBytes, report.MemTotal);
        Assert.Equal(guest.ImageSha256, report.Sha256);
        Assert.Equal(ImageBytes, report.TotalBytes);
        Assert.Equal([PartBytes, PartBytes, ImageBytes - (2 * PartBytes)], report.Parts.Select(p => p.Bytes));
        Assert.Equal(["1", "2", "3"], StoredParts(s3, uploadId));
        await client.CompleteMultipartUploadAsync(new CompleteMultipartUploadRequest
        {
            BucketName = s3.Bucket,
            Key = key,
            UploadId = uploadId,
            PartETags = [.. report.Parts.Select(p => new PartETag(p.Number, p.ETag))],
        });
        using GetObjectResponse stored = await client.GetObjectAsync(s3.Bucket, key);
        using var copy = new MemoryStream();
        await stored.ResponseStream.CopyToAsync(copy);
        Assert.True(guest.Image.AsSpan().SequenceEqual(copy.ToArray()), "the object assembled from the guest's parts differs from the image");
        AssertOnlyTheToolWasWritten(guest);
    }

    [SkippableTheory]
    [InlineData(WinPmemStatusText.BeforeImage)]
    [InlineData(WinPmemStatusText.AfterImage)]
    public async Task Aws_script_refuses_a_stream_polluted_by_winpmem_status_text_and_completes_nothing(WinPmemStatusText where)
    {
        using var guest = new PowerShellGuest(Fixture.Require("memory.raw"), ImageBytes, where);
        using var s3 = new S3Emulator(AwsHarness.Bucket, AwsHarness.AccessKey, AwsHarness.SecretKey);
        using AmazonS3Client client = S3Client(s3);
        (string script, string uploadId, string key) = await AwsScriptAsync(client, s3, guest, guest.ToolSha256);

        (List<string> lines, int? exit) = guest.Run(script);

        string output = string.Join('\n', lines);
        Assert.True(exit == 3, string.Join('\n', lines));
        Assert.Contains(lines, l => l.StartsWith("CLOUDMEM_ERROR WinPmem wrote status text into its standard output", StringComparison.Ordinal));
        Assert.DoesNotContain(lines, l => l.StartsWith("CLOUDMEM_RESULT", StringComparison.Ordinal));
        // Text before the image is seen in the first part, before any upload; text after it in the short last part,
        // once the full parts before it are uploaded (never completed: the connector completes only a valid report).
        string[] uploaded = where == WinPmemStatusText.BeforeImage ? [] : ["1", "2"];
        Assert.Equal(uploaded, lines.Where(l => l.StartsWith("CLOUDMEM_PART ", StringComparison.Ordinal)).Select(l => l.Split(' ')[1]));
        Assert.True(StoredParts(s3, uploadId).SequenceEqual(uploaded), output);
        await Assert.ThrowsAsync<AmazonS3Exception>(() => client.GetObjectMetadataAsync(s3.Bucket, key));
        AssertOnlyTheToolWasWritten(guest);
    }

    [SkippableFact]
    public async Task Aws_script_reports_a_failed_tool_and_no_result()
    {
        using var guest = new PowerShellGuest(Fixture.Require("memory.raw"), ImageBytes, exitCode: 5);
        using var s3 = new S3Emulator(AwsHarness.Bucket, AwsHarness.AccessKey, AwsHarness.SecretKey);
        using AmazonS3Client client = S3Client(s3);
        (string script, _, string key) = await AwsScriptAsync(client, s3, guest, guest.ToolSha256);

        (List<string> lines, int? exit) = guest.Run(script);

        Assert.True(exit == 3, string.Join('\n', lines));
        Assert.Contains("CLOUDMEM_ERROR acquisition tool exited with status 5: stand-in: cannot read physical memory", lines.Select(l => l.TrimEnd()));
        Assert.DoesNotContain(lines, l => l.StartsWith("CLOUDMEM_RESULT", StringComparison.Ordinal));
        await Assert.ThrowsAsync<AmazonS3Exception>(() => client.GetObjectMetadataAsync(s3.Bucket, key));
        AssertOnlyTheToolWasWritten(guest);
    }

    [SkippableFact]
    public async Task Aws_script_does_not_run_a_tool_whose_hash_differs()
    {
        using var guest = new PowerShellGuest(Fixture.Require("memory.raw"), 1 << 20);
        using var s3 = new S3Emulator(AwsHarness.Bucket, AwsHarness.AccessKey, AwsHarness.SecretKey);
        using AmazonS3Client client = S3Client(s3);
        string expected = new('0', 64);
        (string script, _, _) = await AwsScriptAsync(client, s3, guest, expected);

        (List<string> lines, int? exit) = guest.Run(script);

        Assert.True(exit == 3, string.Join('\n', lines));
        Assert.Contains($"CLOUDMEM_ERROR acquisition tool SHA-256 is {guest.ToolSha256}, expected {expected}: not run", lines);
        Assert.Null(guest.FilesAtStart);
        Assert.Empty(guest.FilesLeft());
        Assert.Empty(guest.DirectoriesLeft());
    }

    [SkippableFact]
    public async Task Azure_script_streams_winpmem_stdout_by_blocks_into_the_committed_blob()
    {
        using var guest = new PowerShellGuest(Fixture.Require("memory.raw"), ImageBytes);
        (string script, Hashtable parameters, BlockBlobClient blob) = await AzureScriptAsync(guest, guest.ToolSha256);

        (List<string> lines, int? exit) = guest.Run(script, parameters);

        string output = string.Join('\n', lines);
        CloudMem.Connectors.Azure.GuestReport report = AzureGuestScript.ParseOutput(output);
        Assert.True(report.Error is null && report.Sha256 is not null, output);
        Assert.True(exit is null or 0, output);
        Assert.Contains($"CLOUDMEM_TOOL_SHA256 {guest.ToolSha256}", lines);
        Assert.Contains("CLOUDMEM_COMMITTED", lines);
        Assert.Equal(guest.ImageSha256, report.Sha256);
        Assert.Equal(ImageBytes, report.SizeBytes);
        Assert.Equal(2, lines.Count(l => l.StartsWith("CLOUDMEM_PART ", StringComparison.Ordinal)));
        using var copy = new MemoryStream();
        await blob.DownloadToAsync(copy);
        Assert.True(guest.Image.AsSpan().SequenceEqual(copy.ToArray()), "the committed blob differs from the image");
        AssertOnlyTheToolWasWritten(guest);
    }

    [SkippableTheory]
    [InlineData(WinPmemStatusText.BeforeImage)]
    [InlineData(WinPmemStatusText.AfterImage)]
    public async Task Azure_script_refuses_a_stream_polluted_by_winpmem_status_text_and_commits_nothing(WinPmemStatusText where)
    {
        using var guest = new PowerShellGuest(Fixture.Require("memory.raw"), ImageBytes, where);
        (string script, Hashtable parameters, BlockBlobClient blob) = await AzureScriptAsync(guest, guest.ToolSha256);

        (List<string> lines, int? exit) = guest.Run(script, parameters);

        string output = string.Join('\n', lines);
        Assert.True(exit == 3, string.Join('\n', lines));
        Assert.Contains(lines, l => l.StartsWith("CLOUDMEM_ERROR WinPmem wrote status text into its standard output", StringComparison.Ordinal));
        Assert.DoesNotContain("CLOUDMEM_COMMITTED", lines);
        Assert.Equal(where == WinPmemStatusText.BeforeImage ? 0 : 1, lines.Count(l => l.StartsWith("CLOUDMEM_PART ", StringComparison.Ordinal)));
        Assert.DoesNotContain(lines, l => l.StartsWith("CLOUDMEM_RESULT", StringComparison.Ordinal));
        Assert.False((await blob.ExistsAsync()).Value, output);
        AssertOnlyTheToolWasWritten(guest);
    }

    [SkippableFact]
    public async Task Azure_script_commits_nothing_when_the_tool_fails()
    {
        using var guest = new PowerShellGuest(Fixture.Require("memory.raw"), ImageBytes, exitCode: 5);
        (string script, Hashtable parameters, BlockBlobClient blob) = await AzureScriptAsync(guest, guest.ToolSha256);

        (List<string> lines, int? exit) = guest.Run(script, parameters);

        string output = string.Join('\n', lines);
        Assert.True(exit == 3, output);
        Assert.Contains("CLOUDMEM_ERROR winpmem exited with status 5: stand-in: cannot read physical memory", lines.Select(l => l.TrimEnd()));
        Assert.DoesNotContain("CLOUDMEM_COMMITTED", lines);
        Assert.False((await blob.ExistsAsync()).Value, output);
        AssertOnlyTheToolWasWritten(guest);
    }

    [SkippableFact]
    public async Task Azure_script_does_not_run_a_tool_whose_hash_differs()
    {
        using var guest = new PowerShellGuest(Fixture.Require("memory.raw"), 1 << 20);
        string expected = new('0', 64);
        (string script, Hashtable parameters, BlockBlobClient blob) = await AzureScriptAsync(guest, expected);

        (List<string> lines, int? exit) = guest.Run(script, parameters);

        Assert.True(exit == 3, string.Join('\n', lines));
        Assert.Contains($"CLOUDMEM_ERROR staged tool SHA-256 is {guest.ToolSha256}, expected {expected}: not run", lines);
        Assert.Null(guest.FilesAtStart);
        Assert.False((await blob.ExistsAsync()).Value);
        Assert.Empty(guest.FilesLeft());
        Assert.Empty(guest.DirectoriesLeft());
    }

    /// <summary>While the tool ran, TEMP held only the tool binary (in the script's work directory); afterwards nothing.</summary>
    private static void AssertOnlyTheToolWasWritten(PowerShellGuest guest)
    {
        string[] atStart = Assert.IsType<string[]>(guest.FilesAtStart);
        string tool = Assert.Single(atStart);
        Assert.Equal("winpmem.exe", Path.GetFileName(tool));
        Assert.StartsWith("cloudmem-", Path.GetFileName(Path.GetDirectoryName(tool)), StringComparison.Ordinal);
        Assert.Equal(guest.Temp, Path.GetDirectoryName(Path.GetDirectoryName(tool)));
        if (guest.FilesAtEnd is { } atEnd)
        {
            Assert.Equal(atStart, atEnd);
        }
        Assert.Empty(guest.FilesLeft());
        Assert.Empty(guest.DirectoriesLeft());
    }

    /// <summary>The part numbers s3rver holds for an upload (it keeps each part as uploads/ID/N; it has no ListParts).</summary>
    private static string[] StoredParts(S3Emulator s3, string uploadId) => [.. Directory.GetFiles(s3.DataDirectory, "*", SearchOption.AllDirectories)
        .Where(f => Path.GetFileName(Path.GetDirectoryName(f)) == uploadId && int.TryParse(Path.GetFileName(f), out _))
        .Select(Path.GetFileName).Order(StringComparer.Ordinal)!];

    private static AmazonS3Client S3Client(S3Emulator s3) => new(
        new BasicAWSCredentials(AwsHarness.AccessKey, AwsHarness.SecretKey),
        new AmazonS3Config
        {
            ServiceURL = s3.Url,
            ForcePathStyle = true,
            AuthenticationRegion = "us-east-1",
            RequestChecksumCalculation = RequestChecksumCalculation.WHEN_REQUIRED,
            ResponseChecksumValidation = ResponseChecksumValidation.WHEN_REQUIRED,
        });

    /// <summary>
    /// Stages the stand-in, starts a multipart upload and writes the ticket (tool URL, then one presigned UploadPart URL
    /// per part the bound allows), as the connector does; returns the script with its SSM reference resolved to the
    /// ticket's presigned URL, as Systems Manager delivers it.
    /// </summary>
    private static async Task<(string Script, string UploadId, string Key)> AwsScriptAsync(AmazonS3Client client, S3Emulator s3, PowerShellGuest guest, string toolSha256)
    {
        const string key = "cases/windows.raw";
        await client.PutObjectAsync(new PutObjectRequest { BucketName = s3.Bucket, Key = "tools/winpmem.exe", FilePath = guest.ToolFile, UseChunkEncoding = false });
        string uploadId = (await client.InitiateMultipartUploadAsync(s3.Bucket, key)).UploadId;
        DateTime expires = DateTime.UtcNow.AddMinutes(30);
        Task<string> Presign(string objectKey, HttpVerb verb, int part = 0)
        {
            var request = new GetPreSignedUrlRequest { BucketName = s3.Bucket, Key = objectKey, Verb = verb, Expires = expires, Protocol = Protocol.HTTP };
            if (part > 0)
            {
                request.UploadId = uploadId;
                request.PartNumber = part;
            }
            return client.GetPreSignedURLAsync(request);
        }
        var urls = new List<string> { await Presign("tools/winpmem.exe", HttpVerb.GET) };
        for (int part = 1; part <= BoundBytes / PartBytes; part++)
        {
            urls.Add(await Presign(key, HttpVerb.PUT, part));
        }
        await client.PutObjectAsync(new PutObjectRequest { BucketName = s3.Bucket, Key = "tickets/windows-run", ContentBody = string.Join('\n', urls), UseChunkEncoding = false });
        string ticketUrl = await Presign("tickets/windows-run", HttpVerb.GET);
        string script = AwsGuestScript.PowerShell(new GuestScriptInput(Ticket, toolSha256, PartBytes, BoundBytes))
            .Replace(Ticket, ticketUrl, StringComparison.Ordinal);
        return (script, uploadId, key);
    }

    /// <summary>Stages the stand-in in a new container; returns the script and its protected parameters (read SAS of the tool, write SAS of the evidence blob).</summary>
    private async Task<(string Script, Hashtable Parameters, BlockBlobClient Blob)> AzureScriptAsync(PowerShellGuest guest, string toolSha256)
    {
        BlobContainerClient container = azurite.Service.GetBlobContainerClient(azurite.NewContainer());
        BlobClient tool = container.GetBlobClient("tools/winpmem.exe");
        await tool.UploadAsync(guest.ToolFile);
        BlockBlobClient blob = container.GetBlockBlobClient("evidence/windows.raw");
        DateTimeOffset expires = DateTimeOffset.UtcNow.AddMinutes(30);
        var parameters = new Hashtable
        {
            [AzureGuestScript.ToolUrlParameter] = AzureGuestScript.ParameterValue(tool.GenerateSasUri(BlobSasPermissions.Read, expires)),
            [AzureGuestScript.UploadUrlParameter] = AzureGuestScript.ParameterValue(blob.GenerateSasUri(BlobSasIssuer.BlockUploadPermissions, expires)),
        };
        return (AzureGuestScript.Build(AzureGuestTool.WinPmem, toolSha256, "windows-run"), parameters, blob);
    }
}
