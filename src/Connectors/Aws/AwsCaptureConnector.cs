using System.Globalization;
using System.Security.Cryptography;
using Amazon.EC2.Model;
using Amazon.Runtime;
using Amazon.S3;
using Amazon.S3.Model;
using Amazon.SimpleSystemsManagement;
using Amazon.SimpleSystemsManagement.Model;
using CloudMem.Connectors.Core;
using Ec2Tag = Amazon.EC2.Model.Tag;

namespace CloudMem.Connectors.Aws;

/// <summary>
/// <c>cloudmem capture aws</c>: memory of a running EC2 instance, taken in the guest with AVML/WinPmem through SSM
/// Run Command and streamed to S3 in parts through presigned URLs (the guest holds no credential), then hashed on our
/// side while streaming it back, opened with our parsers and recorded in a custody manifest. Or, opt-in, hibernation
/// plus a root-volume snapshot.
/// </summary>
public sealed partial class AwsCaptureConnector : ICaptureConnector
{
    private const long MiB = 1 << 20;
    private readonly AwsClients _clients;
    private readonly AwsCaptureOptions _options;
    private readonly CaptureRequest _request;
    private readonly CaptureLog _log;
    private readonly EvidenceOpener _opener;

    /// <summary>Creates the connector; <paramref name="log"/>'s scrubber learns the credentials at once.</summary>
    public AwsCaptureConnector(AwsClients clients, AwsCaptureOptions options, CaptureRequest request, CaptureLog log, EvidenceOpener opener)
    {
        _clients = clients;
        _options = options;
        _request = request;
        _log = log;
        _opener = opener;
        RegisterCredentials(clients.Credentials, log.Scrubber);
    }

    /// <summary>The clients (workflow steps share them).</summary>
    internal AwsClients Clients => _clients;

    private string Method => _options.Method == AwsCaptureMethod.Hibernate ? "hibernate" : "ssm";

    /// <summary>Registers the credential values with the scrubber (they must never appear anywhere).</summary>
    internal static void RegisterCredentials(AWSCredentials credentials, SecretScrubber scrubber)
    {
        ImmutableCredentials values = credentials.GetCredentials();
        scrubber.Register(values.AccessKey);
        scrubber.Register(values.SecretKey);
        scrubber.Register(values.Token);
    }

    /// <inheritdoc />
    public async Task<CapturePlan> PlanAsync(CancellationToken cancellationToken)
    {
        var plan = new CapturePlan("aws", _options.InstanceId, Method);
        var facts = new AwsFacts();
        await AwsPreflight.GatherCaptureFactsAsync(_clients, new AwsCalls(null), _options, plan, facts, cancellationToken).ConfigureAwait(false);
        Describe(plan, facts);
        return plan;
    }

    /// <inheritdoc />
    public async Task<CaptureResult> CaptureAsync(CancellationToken cancellationToken)
    {
        var recorder = new CustodyRecorder("aws", _options.InstanceId, Method, _request, _log);
        var calls = new AwsCalls(recorder);
        var plan = new CapturePlan("aws", _options.InstanceId, Method);
        var facts = new AwsFacts();
        try
        {
            await AwsPreflight.GatherCaptureFactsAsync(_clients, calls, _options, plan, facts, cancellationToken).ConfigureAwait(false);
            if (facts.CallerArn is not null)
            {
                recorder.Operator(facts.CallerArn, "sts:GetCallerIdentity");
            }
            recorder.Preflight(plan);
            if (_options.Method == AwsCaptureMethod.Hibernate)
            {
                string path = await HibernateAsync(recorder, calls, facts, cancellationToken).ConfigureAwait(false);
                return new CaptureResult(recorder.Build(), path);
            }
            string manifestPath = await CaptureWithSsmAsync(recorder, calls, facts, cancellationToken).ConfigureAwait(false);
            return new CaptureResult(recorder.Build(), manifestPath);
        }
        catch (Exception e)
        {
            recorder.Fail(e);
            string path = recorder.Write();
            _log.Warn($"manifest written: {path}");
            if (e is CaptureException or OperationCanceledException)
            {
                throw;
            }
            throw new CaptureException($"aws capture of {_options.InstanceId} failed: {e.GetType().Name}: {e.Message}", e);
        }
    }

    // The layout of one capture: parts, bound, keys.
    internal sealed record Layout(string EvidenceKey, string TicketKey, string ParameterName, long PartBytes, int Parts, long BoundBytes, string DocumentName, string EvidenceName)
    {
        /// <summary>The pinned document version (null: the document's default version).</summary>
        public string? DocumentVersion { get; init; }
    }

    internal Layout PlanLayout(AwsFacts facts, DateTimeOffset start)
    {
        long memory = (facts.MemoryMiB ?? 0) * MiB;
        long bound = memory + memory / 20 + 64 * MiB;
        long part = Math.Max(RoundUp(_options.MinPartBytes, MiB), RoundUp((bound + _options.MaxParts - 1) / _options.MaxParts, MiB));
        part = Math.Max(part, 5 * MiB);
        if (part > 5L << 30)
        {
            throw new CaptureException($"{memory} bytes of memory need parts over 5 GiB with at most {_options.MaxParts} parts; raise the part count");
        }
        int parts = (int)((bound + part - 1) / part);
        string stamp = start.UtcDateTime.ToString("yyyyMMdd'T'HHmmss'Z'", CultureInfo.InvariantCulture);
        string dir = AwsKeys.Join(_options.Prefix, _request.CaseId ?? "no-case", _options.InstanceId, stamp);
        string name = facts.Tool == AwsAcquisitionTool.Avml ? "memory.lime" : "memory.raw";
        string nonce = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(12));
        return new Layout(
            AwsKeys.Join(dir, name),
            AwsKeys.Join(dir, $".ticket-{nonce}"),
            $"/cloudmem/ticket/{nonce}",
            part,
            parts,
            parts * part,
            facts.IsWindows ? _options.Documents.Windows : _options.Documents.Linux,
            name) { DocumentVersion = _options.Documents.Version };
    }

    private static long RoundUp(long value, long unit) => (value + unit - 1) / unit * unit;

    private string Script(AwsFacts facts, Layout layout, string toolSha256)
    {
        var input = new GuestScriptInput($"{{{{ssm:{layout.ParameterName}}}}}", toolSha256, layout.PartBytes, layout.BoundBytes);
        return facts.IsWindows ? AwsGuestScript.PowerShell(input) : AwsGuestScript.Bash(input);
    }

    private void Describe(CapturePlan plan, AwsFacts facts)
    {
        if (_options.Method == AwsCaptureMethod.Hibernate)
        {
            plan.Step("tag instance", $"CreateTags cloudmem:case-id={_request.CaseId ?? "(none)"}");
            plan.Step("hibernate", "StopInstances Hibernate=true, then DescribeInstances until stopped");
            plan.Step("snapshot", "CreateSnapshots of the instance's volumes (root volume holds the hibernation image), record snapshot ids");
            plan.Step("read back", "wait for the root snapshot to complete, read its written blocks with the EBS direct APIs (ListSnapshotBlocks/GetSnapshotBlock, SHA-256 per block), find the swsusp/hiberfil image, copy it out, hash it and open it with our parsers", mutating: false);
            plan.Step("manifest", $"write the custody manifest locally and as custody.json under s3://{_options.Bucket}/{_options.Prefix}");
            return;
        }
        if (!plan.Ready || facts.MemoryMiB is null)
        {
            plan.Step("capture", "not planned: a preflight check failed", mutating: false);
            return;
        }
        Layout layout = PlanLayout(facts, DateTimeOffset.UtcNow);
        plan.Step("stage tool", facts.ToolInBucket
            ? $"s3://{_options.Bucket}/{facts.ToolKey} is there; stream it back and record its SHA-256"
            : $"PutObject {_options.ToolFile} as s3://{_options.Bucket}/{facts.ToolKey}, record its SHA-256");
        plan.Step("tag instance", $"CreateTags cloudmem:case-id={_request.CaseId ?? "(none)"}, cloudmem:evidence=s3://{_options.Bucket}/{layout.EvidenceKey}");
        plan.Step("start upload", $"CreateMultipartUpload s3://{_options.Bucket}/{layout.EvidenceKey}");
        plan.Step("presign", $"{layout.Parts} UploadPart URLs of {layout.PartBytes / MiB} MiB (bound {layout.BoundBytes / MiB} MiB from {facts.MemoryMiB} MiB of instance memory) and one GET for the tool, valid for the command timeout + {Resilience.Describe(_options.UrlMargin)}", mutating: false);
        plan.Step("ticket", $"PutObject the URL list as s3://{_options.Bucket}/{layout.TicketKey}; PutParameter {layout.ParameterName} = its presigned GET (the command references the parameter, never a URL)");
        plan.Step("send command", $"SendCommand {layout.DocumentName} to {_options.InstanceId}, execution timeout {Resilience.Describe(_request.Timeouts.Command)}");
        plan.Step("wait", $"GetCommandInvocation every {Resilience.Describe(_request.Timeouts.PollInterval)} until done (timeout {Resilience.Describe(_request.Timeouts.Command)})", mutating: false);
        plan.Step("complete upload", "CompleteMultipartUpload with the ETags the guest reported");
        plan.Step("clean up", "DeleteParameter, DeleteObject the ticket");
        plan.Step("verify", "HeadObject size == reported size <= bound; stream the object back hashing it (SHA-256 == the guest's); open it with our parsers" + (_options.Download ? "; keep the copy" : ""), mutating: false);
        plan.Step("manifest", "write the custody manifest next to the evidence (locally and as a copy beside the object)");
        plan.Attachments.Add(new("guest script", Script(facts, layout, facts.LocalToolSha256 ?? new string('0', 64))));
        if (facts.LocalToolSha256 is null)
        {
            plan.Notes.Add("the script's tool SHA-256 is a placeholder here: the real value is computed when the staged tool is streamed back.");
        }
    }

    private async Task<string> CaptureWithSsmAsync(CustodyRecorder recorder, AwsCalls calls, AwsFacts facts, CancellationToken cancellationToken)
    {
        var state = new SsmCaptureState { Layout = PlanLayout(facts, recorder.Build().StartedUtc) };
        try
        {
            await StartSsmAsync(recorder, calls, facts, state, NoSave, cancellationToken).ConfigureAwait(false);
            GetCommandInvocationResponse invocation = await WaitAsync(calls, recorder, state.CommandId!, cancellationToken).ConfigureAwait(false);
            await FinishSsmAsync(recorder, calls, state, invocation, NoSave, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            await CleanUpAsync(recorder, calls, state).ConfigureAwait(false);
        }
        recorder.Complete();
        return await WriteManifestAsync(recorder, calls, state.Layout, cancellationToken).ConfigureAwait(false);
    }

    private static readonly Func<SsmCaptureState, CancellationToken, Task> NoSave = (_, _) => Task.CompletedTask;

    /// <summary>
    /// Everything up to the guest command, each part done once: a state that already has the tool's hash, the tag, the
    /// upload id or the command id (a restarted step) skips that part. <paramref name="save"/> persists the state after
    /// each part that made something (upload, ticket, command), before anything else happens.
    /// </summary>
    internal async Task StartSsmAsync(CustodyRecorder recorder, AwsCalls calls, AwsFacts facts, SsmCaptureState state, Func<SsmCaptureState, CancellationToken, Task> save, CancellationToken cancellationToken)
    {
        Layout layout = state.Layout;
        string bucket = _options.Bucket;
        SecretScrubber scrubber = _log.Scrubber;
        if (state.CommandId is not null)
        {
            recorder.Step("resume", $"command {state.CommandId} was already sent (upload {state.UploadId}): not sent again");
            return;
        }
        DateTime expires = await PresignExpiryAsync(recorder).ConfigureAwait(false);

        // 1. The tool: staged (content-addressed key) or already there; its SHA-256 always from the stored bytes.
        if (state.ToolSha256 is null)
        {
            if (!facts.ToolInBucket)
            {
                await calls.Run("s3", "PutObject", t => _clients.S3.PutObjectAsync(new PutObjectRequest
                {
                    BucketName = bucket,
                    Key = facts.ToolKey,
                    FilePath = _options.ToolFile,
                    UseChunkEncoding = false,
                }, t), cancellationToken).ConfigureAwait(false);
                recorder.Step("stage tool", $"{_options.ToolFile} -> s3://{bucket}/{facts.ToolKey}");
            }
            using (GetObjectResponse tool = await calls.Run("s3", "GetObject", t => _clients.S3.GetObjectAsync(bucket, facts.ToolKey, t), cancellationToken).ConfigureAwait(false))
            {
                (string toolSha256, long toolLength) = await Sha256Sink.HashAsync(tool.ResponseStream, cancellationToken).ConfigureAwait(false);
                if (facts.LocalToolSha256 is not null && facts.LocalToolSha256 != toolSha256)
                {
                    throw new CaptureException($"the staged tool s3://{bucket}/{facts.ToolKey} has SHA-256 {toolSha256}, the local file {facts.LocalToolSha256}");
                }
                recorder.Tool(AwsPreflight.ToolName(facts.Tool), tool.Metadata["x-amz-meta-version"], toolSha256, $"s3://{bucket}/{facts.ToolKey}");
                recorder.Step("verify tool", $"s3://{bucket}/{facts.ToolKey}: {toolLength} bytes, sha256 {toolSha256}");
                state.ToolSha256 = toolSha256;
            }
        }

        // 2. Mark the instance.
        if (_options.TagInstance && !state.Tagged)
        {
            var tags = new List<Ec2Tag> { new("cloudmem:evidence", $"s3://{bucket}/{layout.EvidenceKey}") };
            if (_request.CaseId is not null)
            {
                tags.Insert(0, new Ec2Tag("cloudmem:case-id", _request.CaseId));
            }
            await calls.Run("ec2", "CreateTags", t => _clients.Ec2.CreateTagsAsync(new CreateTagsRequest { Resources = [_options.InstanceId], Tags = tags }, t), cancellationToken).ConfigureAwait(false);
            recorder.Step("tag instance", string.Join(", ", tags.Select(t => $"{t.Key}={t.Value}")));
            state.Tagged = true;
        }

        // 3. Multipart upload on our side, one presigned URL per part.
        if (state.UploadId is null)
        {
            InitiateMultipartUploadResponse initiated = await calls.Run("s3", "CreateMultipartUpload", t => _clients.S3.InitiateMultipartUploadAsync(new InitiateMultipartUploadRequest
            {
                BucketName = bucket,
                Key = layout.EvidenceKey,
                ContentType = "application/octet-stream",
            }, t), cancellationToken).ConfigureAwait(false);
            state.UploadId = initiated.UploadId;
            recorder.Step("start upload", $"s3://{bucket}/{layout.EvidenceKey} upload {state.UploadId}");
            await save(state, cancellationToken).ConfigureAwait(false);
        }
        else
        {
            recorder.Step("resume", $"upload {state.UploadId} of s3://{bucket}/{layout.EvidenceKey} was already started: reused");
        }
        string uploadId = state.UploadId;
        var urls = new List<string>(layout.Parts + 1) { await PresignAsync(facts.ToolKey, HttpVerb.GET, null, 0, expires).ConfigureAwait(false) };
        for (int part = 1; part <= layout.Parts; part++)
        {
            urls.Add(await PresignAsync(layout.EvidenceKey, HttpVerb.PUT, uploadId, part, expires).ConfigureAwait(false));
        }
        foreach (string url in urls)
        {
            scrubber.RegisterUrl(url);
        }
        recorder.Step("presign", $"{layout.Parts} UploadPart URLs of {layout.PartBytes / MiB} MiB (bound {layout.BoundBytes} bytes) and a GET for the tool, valid until {expires:O}");

        state.TicketPut = true; // set first: a step killed during the PutObject still cleans up the key
        await save(state, cancellationToken).ConfigureAwait(false);
        await calls.Run("s3", "PutObject", t => _clients.S3.PutObjectAsync(new PutObjectRequest
        {
            BucketName = bucket,
            Key = layout.TicketKey,
            ContentBody = string.Join("\n", urls) + "\n",
            ContentType = "text/plain",
            UseChunkEncoding = false,
        }, t), cancellationToken).ConfigureAwait(false);
        string ticketUrl = await PresignAsync(layout.TicketKey, HttpVerb.GET, null, 0, expires).ConfigureAwait(false);
        scrubber.RegisterUrl(ticketUrl);
        bool again = state.ParameterPut;
        state.ParameterPut = true;
        await save(state, cancellationToken).ConfigureAwait(false);
        await calls.Run("ssm", "PutParameter", t => _clients.Ssm.PutParameterAsync(new PutParameterRequest
        {
            Name = layout.ParameterName,
            Type = ParameterType.String,
            Tier = ParameterTier.Standard,
            Value = ticketUrl,
            Description = "cloudmem: one-time ticket for a memory capture (deleted when it ends)",
            // A restarted step replaces the ticket an earlier attempt put before it stopped (no command used it).
            Overwrite = again,
        }, t), cancellationToken).ConfigureAwait(false);
        recorder.Step("ticket", $"s3://{bucket}/{layout.TicketKey}, parameter {layout.ParameterName}");

        // 4. The guest command.
        string script = Script(facts, layout, state.ToolSha256!);
        var commands = AwsGuestScript.ToCommands(script);
        if (scrubber.ContainsSecret(string.Join("\n", commands)))
        {
            throw new CaptureException("refusing to send the guest script: it contains a secret");
        }
        SendCommandResponse sent = await calls.Run("ssm", "SendCommand", t => _clients.Ssm.SendCommandAsync(new SendCommandRequest
        {
            DocumentName = layout.DocumentName,
            DocumentVersion = layout.DocumentVersion,
            InstanceIds = [_options.InstanceId],
            Comment = Truncate($"cloudmem capture {_request.CaseId ?? ""}".Trim(), 100),
            TimeoutSeconds = 600,
            Parameters = new Dictionary<string, List<string>>
            {
                ["commands"] = commands,
                ["executionTimeout"] = [((int)Math.Ceiling(_request.Timeouts.Command.TotalSeconds)).ToString(CultureInfo.InvariantCulture)],
            },
        }, t), cancellationToken).ConfigureAwait(false);
        state.CommandId = sent.Command.CommandId;
        state.CommandSentUtc = DateTimeOffset.UtcNow;
        // Saved at once, before anything else can fail: a restarted step never sends the command again.
        await save(state, CancellationToken.None).ConfigureAwait(false);
        recorder.Step("send command", $"{layout.DocumentName}{(layout.DocumentVersion is null ? "" : " version " + layout.DocumentVersion)} command {state.CommandId} to {_options.InstanceId} ({commands.Count} lines)");
    }

    /// <summary>
    /// After the command ended: the guest's report, CompleteMultipartUpload with its ETags (once: a state whose upload
    /// is already completed goes straight on), then size check and the read-back verification.
    /// </summary>
    internal async Task FinishSsmAsync(CustodyRecorder recorder, AwsCalls calls, SsmCaptureState state, GetCommandInvocationResponse invocation, Func<SsmCaptureState, CancellationToken, Task> save, CancellationToken cancellationToken)
    {
        (GuestReport report, GetObjectMetadataResponse head, CompleteMultipartUploadResponse? complete) = await CompleteAndCheckAsync(recorder, calls, state, invocation, save, cancellationToken).ConfigureAwait(false);
        await VerifyAsync(recorder, calls, state.Layout, report, StoredObject(head, complete), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// The guest's report, CompleteMultipartUpload with its ETags (once: a state whose upload is already completed goes
    /// straight on), then HeadObject and the size check.
    /// </summary>
    private async Task<(GuestReport Report, GetObjectMetadataResponse Head, CompleteMultipartUploadResponse? Complete)> CompleteAndCheckAsync(CustodyRecorder recorder, AwsCalls calls, SsmCaptureState state, GetCommandInvocationResponse invocation, Func<SsmCaptureState, CancellationToken, Task> save, CancellationToken cancellationToken)
    {
        Layout layout = state.Layout;
        string bucket = _options.Bucket;
        GuestReport report = GuestReport.Parse(invocation.StandardOutputContent ?? "");
        foreach (string retry in report.Retries)
        {
            recorder.Step("guest retry", retry);
        }
        report.Validate(layout.PartBytes, layout.BoundBytes);
        if (report.ToolSha256 is not null && report.ToolSha256 != state.ToolSha256)
        {
            throw new CaptureException($"the guest ran a tool with SHA-256 {report.ToolSha256}, expected {state.ToolSha256}");
        }
        recorder.Step("guest report", $"{report.TotalBytes} bytes in {report.Parts.Count} parts, sha256 {report.Sha256}, MemTotal {report.MemTotal?.ToString(CultureInfo.InvariantCulture) ?? "unknown"}");

        // 5. Complete on our side with the reported ETags.
        CompleteMultipartUploadResponse? complete = null;
        if (!state.Completed)
        {
            if (BeforeComplete is not null)
            {
                await BeforeComplete(cancellationToken).ConfigureAwait(false);
            }
            complete = await calls.Run("s3", "CompleteMultipartUpload", t => _clients.S3.CompleteMultipartUploadAsync(new CompleteMultipartUploadRequest
            {
                BucketName = bucket,
                Key = layout.EvidenceKey,
                UploadId = state.UploadId,
                PartETags = [.. report.Parts.Select(p => new PartETag(p.Number, p.ETag))],
            }, t), cancellationToken).ConfigureAwait(false);
            state.Completed = true;
            await save(state, CancellationToken.None).ConfigureAwait(false);
            recorder.Step("complete upload", $"s3://{bucket}/{layout.EvidenceKey} upload {state.UploadId} ETag {complete.ETag}");
        }
        else
        {
            recorder.Step("resume", $"upload {state.UploadId} of s3://{bucket}/{layout.EvidenceKey} was already completed: verified again");
        }

        // 6. Verify: size, then the bytes, hashed on our side while they stream back, then our parsers.
        GetObjectMetadataResponse head = await calls.Run("s3", "HeadObject", t => _clients.S3.GetObjectMetadataAsync(new GetObjectMetadataRequest
        {
            BucketName = bucket,
            Key = layout.EvidenceKey,
            ChecksumMode = ChecksumMode.ENABLED,
        }, t), cancellationToken).ConfigureAwait(false);
        if (head.ContentLength != report.TotalBytes)
        {
            throw new CaptureException($"s3://{bucket}/{layout.EvidenceKey} holds {head.ContentLength} bytes, the guest sent {report.TotalBytes}");
        }
        if (report.MemTotal is long memTotal && report.TotalBytes < memTotal)
        {
            recorder.Step("size check", $"the image ({report.TotalBytes} bytes) is smaller than the guest's MemTotal ({memTotal} bytes): compressed output, or incomplete");
        }
        else
        {
            recorder.Step("size check", $"{report.TotalBytes} bytes: at least MemTotal ({report.MemTotal?.ToString(CultureInfo.InvariantCulture) ?? "unknown"}), within the bound {layout.BoundBytes}");
        }
        return (report, head, complete);
    }

    /// <summary>Test seam: runs just before CompleteMultipartUpload (a test stops a step there, as a timeout would).</summary>
    internal Func<CancellationToken, Task>? BeforeComplete { get; set; }

    /// <summary>Writes the manifest locally and beside the evidence (with its signature); returns the local path.</summary>
    internal Task<string> WriteManifestAsync(CustodyRecorder recorder, AwsCalls calls, Layout layout, CancellationToken cancellationToken)
        => WriteManifestAsync(recorder, calls, Path.GetDirectoryName(layout.EvidenceKey)!.Replace('\\', '/'), cancellationToken);

    /// <summary>Writes the manifest locally and as DIRECTORY/custody.json (with its signature); returns the local path.</summary>
    internal async Task<string> WriteManifestAsync(CustodyRecorder recorder, AwsCalls calls, string directoryKey, CancellationToken cancellationToken)
    {
        string bucket = _options.Bucket;
        string manifestKey = AwsKeys.Join(directoryKey, "custody.json");
        recorder.Step("manifest", $"written locally and as s3://{bucket}/{manifestKey}");
        string path = recorder.Write();
        await calls.Run("s3", "PutObject", t => _clients.S3.PutObjectAsync(new PutObjectRequest { BucketName = bucket, Key = manifestKey, FilePath = path, ContentType = "application/json", UseChunkEncoding = false }, t), cancellationToken).ConfigureAwait(false);
        string signature = ManifestSigning.SignaturePath(path);
        if (_request.Signer is not null && File.Exists(signature))
        {
            await calls.Run("s3", "PutObject", t => _clients.S3.PutObjectAsync(new PutObjectRequest { BucketName = bucket, Key = manifestKey + ".sig", FilePath = signature, ContentType = "application/json", UseChunkEncoding = false }, t), cancellationToken).ConfigureAwait(false);
        }
        return path;
    }

    /// <summary>Version id, ETag and the server-side checksums S3 returned for the evidence object.</summary>
    internal static StoredObjectRecord StoredObject(GetObjectMetadataResponse head, CompleteMultipartUploadResponse? complete)
    {
        var checksums = new SortedDictionary<string, string>(StringComparer.Ordinal);
        void Add(string name, string? value)
        {
            if (!string.IsNullOrEmpty(value))
            {
                checksums[name] = value;
            }
        }
        Add("x-amz-checksum-sha256", head.ChecksumSHA256 ?? complete?.ChecksumSHA256);
        Add("x-amz-checksum-crc32", head.ChecksumCRC32 ?? complete?.ChecksumCRC32);
        Add("x-amz-checksum-crc32c", head.ChecksumCRC32C ?? complete?.ChecksumCRC32C);
        Add("x-amz-checksum-crc64nvme", head.ChecksumCRC64NVME ?? complete?.ChecksumCRC64NVME);
        Add("x-amz-checksum-type", head.ChecksumType?.Value ?? complete?.ChecksumType?.Value);
        string? versionId = head.VersionId ?? complete?.VersionId;
        return new StoredObjectRecord(
            string.IsNullOrEmpty(versionId) || versionId == "null" ? null : versionId,
            head.ETag ?? complete?.ETag,
            checksums.Count == 0 ? null : checksums);
    }

    private async Task VerifyAsync(CustodyRecorder recorder, AwsCalls calls, Layout layout, GuestReport report, StoredObjectRecord stored, CancellationToken cancellationToken)
    {
        Directory.CreateDirectory(_request.OutputDirectory);
        string finalPath = Path.Combine(_request.OutputDirectory, $"{_options.InstanceId}-{Path.GetFileName(layout.EvidenceKey)}");
        bool keep = _options.Download || _request.Download;
        if (keep && File.Exists(finalPath))
        {
            throw new CaptureException($"{finalPath} exists: not overwritten");
        }
        string temp = Path.Combine(_request.OutputDirectory, $".{Path.GetFileName(finalPath)}.{Guid.NewGuid():N}.part");
        string ourSha;
        long length;
        try
        {
            using (GetObjectResponse get = await calls.Run("s3", "GetObject", t => _clients.S3.GetObjectAsync(_options.Bucket, layout.EvidenceKey, t), cancellationToken).ConfigureAwait(false))
            await using (var hashing = new HashingStream(get.ResponseStream))
            await using (var file = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1, FileOptions.Asynchronous))
            {
                length = await Sha256Sink.CopyAsync(hashing, file, cancellationToken).ConfigureAwait(false);
                await file.FlushAsync(cancellationToken).ConfigureAwait(false);
                ourSha = hashing.Sha256Hex;
            }
            recorder.Step("stream back", $"s3://{_options.Bucket}/{layout.EvidenceKey}: {length} bytes, sha256 {ourSha} (computed here while streaming)");
            string? openedAs = null;
            string? problem = null;
            try
            {
                openedAs = _opener(temp);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                problem = CaptureException.OneLine(e.Message.Replace(temp, Path.GetFileName(finalPath), StringComparison.Ordinal));
            }
            string? localPath = null;
            if (keep)
            {
                File.Move(temp, finalPath);
                localPath = Path.GetFullPath(finalPath);
            }
            recorder.Evidence(Path.GetFileName(layout.EvidenceKey), $"s3://{_options.Bucket}/{layout.EvidenceKey}", localPath, length, report.TotalBytes!.Value, ourSha, report.Sha256, openedAs, problem, stored);
        }
        finally
        {
            if (File.Exists(temp))
            {
                File.Delete(temp);
            }
        }
    }

    private async Task<string> PresignAsync(string key, HttpVerb verb, string? uploadId, int partNumber, DateTime expires)
    {
        var request = new GetPreSignedUrlRequest
        {
            BucketName = _options.Bucket,
            Key = key,
            Verb = verb,
            Expires = expires,
            Protocol = _clients.Connection.Endpoints.S3 is { } url && url.StartsWith("http://", StringComparison.OrdinalIgnoreCase) ? Protocol.HTTP : Protocol.HTTPS,
        };
        if (uploadId is not null)
        {
            request.UploadId = uploadId;
            request.PartNumber = partNumber;
        }
        return await _clients.S3.GetPreSignedURLAsync(request).ConfigureAwait(false);
    }

    private static string Truncate(string text, int max) => text.Length <= max ? text : text[..max];
}

/// <summary>
/// Where an SSM capture stands, saved between workflow steps (JSON): the layout, the tool's hash, the upload id, the
/// ticket and parameter (to clean up), the command id and when it was sent, whether the upload was completed, and how
/// far the workflow's read-back got.
/// </summary>
internal sealed class SsmCaptureState
{
    public required AwsCaptureConnector.Layout Layout { get; init; }
    public string? ToolSha256 { get; set; }
    public bool Tagged { get; set; }
    public string? UploadId { get; set; }
    public bool TicketPut { get; set; }
    public bool ParameterPut { get; set; }
    public string? CommandId { get; set; }
    public DateTimeOffset? CommandSentUtc { get; set; }
    public bool Completed { get; set; }
    /// <summary>Disk evidence: EBS volume id -> snapshot id (workflow step "snapshots").</summary>
    public Dictionary<string, string> DiskSnapshots { get; set; } = [];
    /// <summary>The workflow's read-back, once the upload is completed and its size checked (finalize resumes it).</summary>
    public ReadBackState? ReadBack { get; set; }
}
