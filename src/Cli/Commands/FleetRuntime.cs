using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Azure.Storage.Blobs;
using Azure.Storage.Blobs.Specialized;
using CloudMem.Connectors.Core;
using CloudMem.Connectors.Fleet;
using CloudMem.Engine.Analysis;
using CloudMem.RemoteCaptures;
using CloudMem.VmStateParsers;

namespace CloudMem.Cli.Commands;

/// <summary>What a fleet worker does with one capture: analyse it as <c>analyze</c> does, into captures/&lt;id&gt;/, at most once.</summary>
internal static class FleetAnalysis
{
    public static string WorkerName { get; } = $"{Environment.MachineName}:{Environment.ProcessId}";

    /// <summary>
    /// Analyses <paramref name="item"/>'s capture into the case, unless captures/&lt;id&gt;/ is complete already (a
    /// re-delivered activity, or a case being continued): then its recorded outcome is returned. A failed analysis is a
    /// Failed outcome with a one-line reason, never an exception (retrying it would fail the same way).
    /// </summary>
    public static FleetOutcome AnalyseOne(FleetWorkItem item)
    {
        var store = new FleetCaseStore(item.Case);
        if (store.IsComplete(item.Id))
        {
            return Recorded(store, item);
        }
        store.BeginAttempt(item.Id, WorkerName);
        var clock = Stopwatch.StartNew();
        string temporary = store.NewTemporary(item.Id, WorkerName);
        Dictionary<string, int> findings;
        try
        {
            AnalysisRequest request = JsonSerializer.Deserialize<AnalysisRequest>(item.Options, FleetCaseStore.Json)
                ?? throw new CaptureException("fleet work item without analysis options");
            CaseReport report = request.Run(item.Address, null, null, null, CancellationToken.None);
            CaseWriter.Write(report, temporary);
            findings = Enum.GetValues<Severity>().Reverse().ToDictionary(s => s.ToString().ToLowerInvariant(), s => report.Findings.Count(f => f.Severity == s));
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            FleetCaseStore.DiscardAttempt(temporary);
            var failed = new FleetOutcome
            {
                Id = item.Id, Capture = item.Address, Status = "failed", Attempts = store.Attempts(item.Id), Worker = WorkerName,
                Seconds = Math.Round(clock.Elapsed.TotalSeconds, 2), Error = CliApp.Describe(e).Replace("error: ", "", StringComparison.Ordinal),
            };
            store.WriteResult(failed);
            return failed;
        }
        if (!store.Commit(temporary, item.Id))
        {
            return Recorded(store, item);   // a duplicate delivery finished first: its analysis is the one kept
        }
        var done = new FleetOutcome
        {
            Id = item.Id, Capture = item.Address, Status = "done", Attempts = store.Attempts(item.Id), Worker = WorkerName,
            Seconds = Math.Round(clock.Elapsed.TotalSeconds, 2), Findings = findings,
        };
        store.WriteResult(done);
        return done;
    }

    /// <summary>The outcome of a capture whose directory is complete: as recorded, or (killed before recording it) rebuilt from findings.jsonl.</summary>
    private static FleetOutcome Recorded(FleetCaseStore store, FleetWorkItem item)
    {
        FleetOutcome outcome = store.ReadResult(item.Id) is { Status: "done" } recorded
            ? recorded with { Attempts = store.Attempts(item.Id) }
            : new FleetOutcome
            {
                Id = item.Id, Capture = item.Address, Status = "done", Attempts = store.Attempts(item.Id),
                Findings = CountFindings(Path.Combine(store.CaptureDirectory(item.Id), "findings.jsonl")),
            };
        store.WriteResult(outcome);
        return outcome;
    }

    private static Dictionary<string, int> CountFindings(string findingsJsonl)
    {
        var counts = Enum.GetValues<Severity>().Reverse().ToDictionary(s => s.ToString().ToLowerInvariant(), _ => 0);
        foreach (string line in File.Exists(findingsJsonl) ? File.ReadLines(findingsJsonl) : [])
        {
            using JsonDocument finding = JsonDocument.Parse(line);
            if (finding.RootElement.TryGetProperty("severity", out JsonElement severity) && severity.GetString() is { } name && counts.ContainsKey(name))
            {
                counts[name]++;
            }
        }
        return counts;
    }
}

/// <summary>The captures of a fleet run: a local directory's capture files, or the objects under an s3:// or Blob prefix.</summary>
internal static class FleetListing
{
    private static readonly string[] s_notCaptures = [".json", ".txt", ".log", ".md", ".sha256", ".sig", ".pub", ".html", ".csv", ".sqlite"];

    /// <summary>Lists <paramref name="source"/>; <paramref name="skipped"/> gets one line per local file that is not a capture.</summary>
    public static IReadOnlyList<FleetCapture> List(string source, List<string> skipped)
    {
        List<(string Name, string Address)> found = RemoteLocation.IsRemote(source) ? ListRemote(source) : ListLocal(source, skipped);
        IReadOnlyList<string> ids = FleetCaseStore.Ids(found.Select(f => f.Name).ToArray());
        return found.Select((f, i) => new FleetCapture(ids[i], f.Address)).ToArray();
    }

    /// <summary>The directory's files (not its sub-directories) that CaptureOpener recognises, by name.</summary>
    private static List<(string, string)> ListLocal(string directory, List<string> skipped)
    {
        if (!Directory.Exists(directory))
        {
            throw new CaptureException($"{directory}: no such directory (fleet analyze takes a directory of captures, or an s3:// or Blob prefix)");
        }
        var found = new List<(string, string)>();
        foreach (string path in Directory.GetFiles(directory).Order(StringComparer.Ordinal))
        {
            string name = Path.GetFileName(path);
            if (name.StartsWith('.') || s_notCaptures.Contains(Path.GetExtension(name).ToLowerInvariant()))
            {
                continue;
            }
            if (CaptureOpener.TryOpen(path, out RunMappedMemory? memory, out FormatError? error))
            {
                memory!.Dispose();
                found.Add((name, Path.GetFullPath(path)));
            }
            else
            {
                skipped.Add($"{name}: not a capture ({error})");
            }
        }
        return found;
    }

    /// <summary>The objects under an s3://BUCKET/PREFIX or Blob container URL prefix (not probed: read in place by the workers).</summary>
    private static List<(string, string)> ListRemote(string source)
    {
        var found = new List<(string, string)>();
        RemoteLocation location;
        try
        {
            location = RemoteLocation.ParsePrefix(source, Environment.GetEnvironmentVariable("AZURE_STORAGE_CONNECTION_STRING"));
        }
        catch (FormatException e)
        {
            throw new CaptureException(e.Message);
        }
        if (location.Kind == RemoteKind.S3)
        {
            string bucket = location.Container!, prefix = location.Key!;
            using Amazon.S3.IAmazonS3 s3 = S3RangeReader.CreateClient(Environment.GetEnvironmentVariable);
            var request = new Amazon.S3.Model.ListObjectsV2Request { BucketName = bucket, Prefix = prefix };
            Amazon.S3.Model.ListObjectsV2Response page;
            do
            {
                page = s3.ListObjectsV2Async(request).GetAwaiter().GetResult();
                foreach (Amazon.S3.Model.S3Object o in page.S3Objects ?? [])
                {
                    if (Candidate(o.Key, o.Size ?? 0))
                    {
                        found.Add((o.Key[prefix.Length..].TrimStart('/'), $"s3://{bucket}/{o.Key}"));
                    }
                }
                request.ContinuationToken = page.NextContinuationToken;
            }
            while (page.IsTruncated == true && found.Count < 1_000_000);
            return found;
        }
        // A Blob prefix: https://ACCOUNT.blob.core.windows.net/CONTAINER/PREFIX (or the emulator's http://host:port/ACCOUNT/CONTAINER/PREFIX).
        string blobPrefix = location.Key!.Length == 0 ? "" : location.Key.TrimEnd('/') + "/";
        BlobClient probe = BlobRangeReader.CreateClient(location, Environment.GetEnvironmentVariable);
        BlobContainerClient container = probe.GetParentBlobContainerClient();
        foreach (Azure.Storage.Blobs.Models.BlobItem blob in container.GetBlobs(new Azure.Storage.Blobs.Models.GetBlobsOptions { Prefix = blobPrefix.Length == 0 ? null : blobPrefix }))
        {
            if (Candidate(blob.Name, blob.Properties.ContentLength ?? 0))
            {
                string name = blob.Name[blobPrefix.Length..].TrimStart('/');
                found.Add((name, $"{container.Uri.AbsoluteUri.TrimEnd('/')}/{blob.Name}"));
            }
        }
        return found;
    }

    private static bool Candidate(string key, long size)
        => size >= 4096 && !key.EndsWith('/') && !s_notCaptures.Contains(Path.GetExtension(key).ToLowerInvariant());
}

/// <summary>An azurite the fleet command starts for itself when no --storage is given (in-memory, on free loopback ports).</summary>
internal sealed class LocalAzurite : IDisposable
{
    private const string Key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
    private readonly Process _process;

    private LocalAzurite(Process process, string connectionString)
    {
        _process = process;
        ConnectionString = connectionString;
    }

    /// <summary>azurite's development account with its three endpoints.</summary>
    public string ConnectionString { get; }

    /// <summary>The azurite executable: CLOUDMEM_AZURITE, `azurite` on PATH, or tests/emulators/setup.sh's install; null when none.</summary>
    public static string? Find()
    {
        string emulators = Environment.GetEnvironmentVariable("CLOUDMEM_EMULATORS") is { Length: > 0 } e
            ? e : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "cloudmem", "emulators");
        IEnumerable<string?> candidates =
        [
            Environment.GetEnvironmentVariable("CLOUDMEM_AZURITE"),
            .. (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries).Select(d => Path.Combine(d, "azurite")),
            Path.Combine(emulators, "azurite", "node_modules", ".bin", "azurite"),
        ];
        return candidates.FirstOrDefault(c => c is { Length: > 0 } && File.Exists(c));
    }

    /// <summary>Starts azurite (Blob, Queue, Table) with its files in <paramref name="workspace"/>.</summary>
    public static LocalAzurite Start(string workspace)
    {
        string azurite = Find() ?? throw new CaptureException(
            "no --storage given and azurite was not found (CLOUDMEM_AZURITE, PATH, ~/.cache/cloudmem/emulators): install it (npm install -g azurite, or tests/emulators/setup.sh) or pass --storage with an Azure Storage connection string");
        Directory.CreateDirectory(workspace);
        int[] ports = [FreePort(), FreePort(), FreePort()];
        var start = new ProcessStartInfo(azurite)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = workspace,
        };
        foreach (string a in new[]
                 {
                     "--blobHost", "127.0.0.1", "--blobPort", ports[0].ToString(CultureInfo.InvariantCulture),
                     "--queueHost", "127.0.0.1", "--queuePort", ports[1].ToString(CultureInfo.InvariantCulture),
                     "--tableHost", "127.0.0.1", "--tablePort", ports[2].ToString(CultureInfo.InvariantCulture),
                     "--inMemoryPersistence", "--skipApiVersionCheck", "--loose", "--disableTelemetry",
                 })
        {
            start.ArgumentList.Add(a);
        }
        Process process = Process.Start(start) ?? throw new CaptureException($"{azurite}: could not be started");
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, _) => { };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var azuriteHost = new LocalAzurite(process,
            $"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={Key};BlobEndpoint=http://127.0.0.1:{ports[0]}/devstoreaccount1;"
            + $"QueueEndpoint=http://127.0.0.1:{ports[1]}/devstoreaccount1;TableEndpoint=http://127.0.0.1:{ports[2]}/devstoreaccount1;");
        var clock = Stopwatch.StartNew();
        foreach (int port in ports)
        {
            while (!Listening(port))
            {
                if (process.HasExited || clock.Elapsed > TimeSpan.FromSeconds(60))
                {
                    azuriteHost.Dispose();
                    throw new CaptureException($"{azurite} did not start listening on 127.0.0.1:{port} within 60 s");
                }
                Thread.Sleep(100);
            }
        }
        return azuriteHost;
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static bool Listening(int port)
    {
        try
        {
            using var client = new TcpClient();
            client.Connect(IPAddress.Loopback, port);
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    public void Dispose()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                _process.WaitForExit(5000);
            }
        }
        catch (InvalidOperationException)
        {
        }
        _process.Dispose();
    }
}
