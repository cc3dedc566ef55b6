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
            StatusMargin = TimeSpan.FromSeconds(1),
        },
        request, Log, path =>
        {
            using RunMappedMemory memory = CaptureOpener.Open(path);
            return memory.Metadata.Format;
        });

    /// <summary>
    /// The AVML stand-in staged as the tool (the test's substitution for the memory source): like <c>avml [--compress]
    /// FILE</c> it writes the image to its last argument, which the guest script makes /dev/stdout (the upload pipe);
    /// here the image is a real capture read with cat.
    /// </summary>
    private static string StandIn(string evidenceFile)
        => $"#!/bin/sh\n# AVML stand-in for tests: avml [--compress] FILE\nfor a; do out=\"$a\"; done\nexec cat '{evidenceFile}' > \"$out\"\n";

    public async ValueTask DisposeAsync()
    {
        await Arm.DisposeAsync();
        _temp.Dispose();
    }
}
