using System.Text;
using Azure.Core.Pipeline;
using Azure.Storage.Blobs;
using CloudMem.Connectors.Azure;
using CloudMem.Connectors.Core;
using CloudMem.VmStateParsers;

namespace CloudMem.Tests.Connectors.Azure;

/// <summary>One Azure scenario: fake ARM with a VM, an azurite container, the AVML stand-in, a scrubbing log kept in memory.</summary>
internal sealed class AzureTestBed : IAsyncDisposable
{
    public const string Subscription = "6f1c2d3e-0a1b-4c5d-8e9f-00112233aabb";

    private readonly Support.TempDir _temp = new();

    public AzureTestBed(AzuriteHost azurite, string evidenceFile, int? containerPort = null, string osType = "Linux",
        string power = "running", string agent = "Ready", bool hibernationEnabled = false)
    {
        Azurite = azurite;
        EvidenceFile = evidenceFile;
        Arm = new FakeArm();
        VmId = Arm.AddVm(Subscription, "rg-ir", "vm1", osType, power, agent, hibernationEnabled, nics: 2);
        Container = azurite.NewContainer();
        ContainerUrl = new Uri($"{(azurite.Https ? "https" : "http")}://127.0.0.1:{containerPort ?? azurite.Port}/{AzuriteHost.Account}/{Container}");
        if (azurite.Https)
        {
            Arm.GuestEnvironment["CURL_CA_BUNDLE"] = azurite.CertificatePemPath;
        }
        ToolFile = _temp.File("avml");
        File.WriteAllText(ToolFile, StandIn(evidenceFile));
        OutDir = _temp.File("out");
        Scrubber = new SecretScrubber();
        Log = new CaptureLog(Scrubber, LogText);
    }

    public AzuriteHost Azurite { get; }

    public string EvidenceFile { get; }

    public FakeArm Arm { get; }

    public string VmId { get; }

    public string Container { get; }

    public Uri ContainerUrl { get; }

    public string ToolFile { get; }

    public string OutDir { get; }

    public SecretScrubber Scrubber { get; }

    public StringWriter LogText { get; } = new();

    public CaptureLog Log { get; }

    public FakeTokenCredential Credential { get; } = new();

    public BlobContainerClient ContainerClient => Azurite.Service.GetBlobContainerClient(Container);

    public AzureArmSettings ArmSettings => new(Arm.Endpoint, "https://management.azure.com", new HttpClientTransport(Arm.CreateHandler()));

    public CaptureRequest Request(bool download = true, TimeSpan? commandTimeout = null, bool plan = false) => new()
    {
        CaseId = "IR-42",
        Trigger = CaptureTrigger.Parse("defender:2517538088322968242_abc"),
        OutputDirectory = OutDir,
        Download = download,
        PlanOnly = plan,
        Timeouts = new CaptureTimeouts
        {
            Command = commandTimeout ?? TimeSpan.FromMinutes(3),
            Operation = TimeSpan.FromMinutes(1),
            PollInterval = TimeSpan.FromMilliseconds(100),
        },
    };

    public AzureCaptureConnector Connector(CaptureRequest request, AzureCaptureMethod method = AzureCaptureMethod.RunCommand) => new(
        new AzureCaptureOptions
        {
            VmId = AzureTarget.ParseVmId(VmId),
            ContainerUrl = ContainerUrl,
            Credential = Credential,
            StorageKey = Azurite.Https ? null : Azurite.Credential,
            BlobOptions = Azurite.ClientOptions(),
            Arm = ArmSettings,
            ToolFile = ToolFile,
            ToolVersion = "0.14.0 (test stand-in)",
            Method = method,
        },
        request, Log, path =>
        {
            using RunMappedMemory memory = CaptureOpener.Open(path);
            return memory.Metadata.Format;
        });

    /// <summary>
    /// The AVML stand-in staged as the tool: like AVML with --sas-url it writes the image locally (here: copies a real
    /// capture) and uploads it with Put Block (4 MiB blocks, each retried by curl on a dropped connection: a retried
    /// block replaces the same block id) and Put Block List.
    /// </summary>
    private static string StandIn(string evidenceFile)
    {
        var text = new StringBuilder();
        text.AppendLine("#!/bin/sh");
        text.AppendLine("# AVML stand-in for tests: avml [--compress] [--sas-url URL] [--delete] FILE");
        text.AppendLine("set -eu");
        text.AppendLine("sas=''");
        text.AppendLine("while [ $# -gt 1 ]; do case \"$1\" in --sas-url) sas=\"$2\"; shift 2 ;; *) shift ;; esac; done");
        text.AppendLine("out=\"$1\"");
        text.AppendLine($"cp '{evidenceFile}' \"$out\"");
        text.AppendLine("[ -z \"$sas\" ] && exit 0");
        text.AppendLine("blocks=$(mktemp -d)");
        text.AppendLine("split -b 4194304 -d -a 6 \"$out\" \"$blocks/b.\"");
        text.AppendLine("list=''");
        text.AppendLine("for f in \"$blocks\"/b.*; do");
        text.AppendLine("  id=$(printf 'block-%s' \"${f##*.}\" | base64 | tr -d '\\n')");
        text.AppendLine("  enc=$(printf %s \"$id\" | sed 's/+/%2B/g; s/\\//%2F/g; s/=/%3D/g')");
        text.AppendLine("  curl -fsS --retry 5 --retry-all-errors --retry-delay 0 -X PUT -H 'x-ms-version: 2021-08-06' -H 'Content-Type: application/octet-stream' --data-binary @\"$f\" \"$sas&comp=block&blockid=$enc\" >/dev/null");
        text.AppendLine("  list=\"$list<Latest>$id</Latest>\"");
        text.AppendLine("done");
        text.AppendLine("curl -fsS --retry 5 --retry-all-errors --retry-delay 0 -X PUT -H 'x-ms-version: 2021-08-06' -H 'Content-Type: application/xml' --data-binary \"<?xml version=\\\"1.0\\\" encoding=\\\"utf-8\\\"?><BlockList>$list</BlockList>\" \"$sas&comp=blocklist\" >/dev/null");
        text.AppendLine("rm -rf \"$blocks\"");
        return text.ToString();
    }

    public async ValueTask DisposeAsync()
    {
        await Arm.DisposeAsync();
        _temp.Dispose();
    }
}
