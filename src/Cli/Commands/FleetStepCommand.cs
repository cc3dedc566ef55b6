using System.ComponentModel;
using System.Diagnostics;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Amazon.S3;
using Amazon.S3.Model;
using CloudMem.Connectors.Core;
using CloudMem.Connectors.Fleet;
using CloudMem.Engine.Analysis;
using CloudMem.RemoteCaptures;
using Spectre.Console;
using Spectre.Console.Cli;

namespace CloudMem.Cli.Commands;

/// <summary>cloudmem fleet step CAPTURE --case s3://BUCKET/CASE_PREFIX: one capture of a fleet on AWS (the Step Functions Distributed Map's item).</summary>
[Description("Analyse one capture (read in place, e.g. s3://BUCKET/KEY) as analyze does and upload its case directory to CASE/captures/<id>/ in S3, then the completion marker CASE/.fleet/done/<id>.json last; a capture whose marker exists is skipped (the item processor of infra/aws/cloudmem-fleet.asl.json)")]
internal sealed class FleetStepCommand : AsyncCommand<FleetStepCommand.Settings>
{
    internal sealed class Settings : AnalysisSettings
    {
        [CommandOption("--case <S3_PREFIX>")]
        [Description("The fleet case in S3: s3://BUCKET/PREFIX (credentials, region and endpoint from the AWS_* environment, as for s3:// captures)")]
        public string? Case { get; init; }

        [CommandOption("--id <ID>")]
        [Description("The capture id (the directory name under captures/); default: the capture's file name, characters outside [A-Za-z0-9._-] as '_'")]
        public string? Id { get; init; }

        public override ValidationResult Validate()
        {
            if (Case is null || !Case.StartsWith("s3://", StringComparison.Ordinal) || Case.Length <= "s3://".Length)
            {
                return ValidationResult.Error("--case s3://BUCKET/PREFIX is required");
            }
            if (Id is not null && (Id.Length == 0 || FleetCaseStore.Safe(Id) != Id || Id is "." or ".."))
            {
                return ValidationResult.Error($"--id may hold only letters, digits, '.', '-' and '_', not '{Id}'");
            }
            return base.Validate();
        }
    }

    public override async Task<int> ExecuteAsync(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        Analyzer.LoadRules(settings.Rules);
        RemoteLocation caseLocation = RemoteLocation.ParsePrefix(settings.Case!);
        string bucket = caseLocation.Container!, prefix = caseLocation.Key!.Trim('/');
        string Key(string relative) => prefix.Length == 0 ? relative : prefix + "/" + relative;
        string name = RemoteLocation.IsRemote(settings.Image) ? Uri.UnescapeDataString(new Uri(settings.Image).AbsolutePath.Split('/')[^1]) : Path.GetFileName(settings.Image);
        string id = settings.Id ?? FleetCaseStore.Safe(name);
        string marker = Key($".fleet/done/{id}.json");
        // Every upload is sent plain (UseChunkEncoding = false): S3-compatible stores (s3rver, some MinIO setups) would
        // keep aws-chunked framing as the object's content.
        using IAmazonS3 s3 = S3RangeReader.CreateClient(Environment.GetEnvironmentVariable);

        if (await ExistsAsync(s3, bucket, marker, cancellationToken))
        {
            Console.Out.WriteLine(JsonSerializer.Serialize(new { id, status = "done", skipped = "complete already", marker = $"s3://{bucket}/{marker}" }, FleetCaseStore.Json));
            return (int)ExitCode.Ok;
        }
        string worker = Environment.GetEnvironmentVariable("ECS_CONTAINER_METADATA_URI_V4") is { Length: > 0 } ? $"ecs:{Environment.MachineName}" : FleetAnalysis.WorkerName;
        await s3.PutObjectAsync(new PutObjectRequest
        {
            BucketName = bucket, Key = Key($".fleet/attempts/{id}/{DateTime.UtcNow:yyyyMMddTHHmmss.fffffff}-{FleetCaseStore.Safe(worker)}.started"),
            ContentBody = JsonSerializer.Serialize(new { worker, capture = settings.Image, startedUtc = DateTime.UtcNow }, FleetCaseStore.Json),
            UseChunkEncoding = false,
        }, cancellationToken);

        var clock = Stopwatch.StartNew();
        // The case directory's own name is the capture id: the Parquet files take capture_id from it.
        string local = Directory.CreateDirectory(Path.Combine(Directory.CreateTempSubdirectory("cloudmem-step-").FullName, id)).FullName;
        try
        {
            CaseReport report = AnalysisRequest.From(settings).Run(settings.Image, null, null, null, cancellationToken);
            CaseWriter.Write(report, local);
            // Upload every file of the case; a task killed half-way leaves no marker, so its re-run uploads them again.
            var files = new List<object>();
            foreach (string path in Directory.GetFiles(local, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
            {
                string relative = Path.GetRelativePath(local, path).Replace(Path.DirectorySeparatorChar, '/');
                await s3.PutObjectAsync(new PutObjectRequest { BucketName = bucket, Key = Key($"captures/{id}/{relative}"), FilePath = path, UseChunkEncoding = false }, cancellationToken);
                files.Add(new { name = relative, size = new FileInfo(path).Length, sha256 = Sha256(path) });
            }
            var outcome = new
            {
                id, capture = settings.Image, status = "done", worker, seconds = Math.Round(clock.Elapsed.TotalSeconds, 2),
                findings = Enum.GetValues<Severity>().Reverse().ToDictionary(s => s.ToString().ToLowerInvariant(), s => report.Findings.Count(f => f.Severity == s)),
                files,
            };
            string json = JsonSerializer.Serialize(outcome, FleetCaseStore.Json);
            await s3.PutObjectAsync(new PutObjectRequest { BucketName = bucket, Key = marker, ContentBody = json, ContentType = "application/json", UseChunkEncoding = false }, cancellationToken);
            Console.Out.WriteLine(json);
            return (int)ExitCode.Ok;
        }
        finally
        {
            FleetCaseStore.DiscardAttempt(local);
        }
    }

    private static async Task<bool> ExistsAsync(IAmazonS3 s3, string bucket, string key, CancellationToken cancellationToken)
    {
        try
        {
            await s3.GetObjectMetadataAsync(bucket, key, cancellationToken);
            return true;
        }
        catch (AmazonS3Exception e) when (e.StatusCode == HttpStatusCode.NotFound)
        {
            return false;
        }
        catch (AmazonS3Exception e)
        {
            throw new CaptureException($"s3://{bucket}/{key}: {e.StatusCode} {CaptureException.OneLine(e.Message)}", e);
        }
    }

    private static string Sha256(string path)
    {
        using FileStream stream = File.OpenRead(path);
        return Convert.ToHexStringLower(SHA256.HashData(stream));
    }
}
