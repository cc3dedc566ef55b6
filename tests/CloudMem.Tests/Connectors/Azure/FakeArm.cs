using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace CloudMem.Tests.Connectors.Azure;

/// <summary>One request the fake ARM received.</summary>
public sealed record ArmCall(string Method, string Path, string Query, string Body, string? Authorization);

/// <summary>
/// A local HTTPS server speaking the ARM REST calls the Azure connector makes (VM, instance view, runCommand as a
/// long-running operation with Azure-AsyncOperation + Location, deallocate with hibernate, NICs, NSGs, snapshots).
/// Its runCommand really runs the guest script (sh) on this machine, so the script's downloads and uploads hit
/// azurite. TLS with a certificate made here; clients trust exactly that certificate (<see cref="CreateHandler"/>).
/// Every response carries x-ms-request-id and x-ms-correlation-request-id.
/// </summary>
public sealed class FakeArm : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly ConcurrentDictionary<string, JsonObject> _resources = new(StringComparer.OrdinalIgnoreCase);
    private readonly ConcurrentDictionary<string, Operation> _operations = new();
    private readonly ConcurrentQueue<ArmCall> _calls = new();
    private readonly ConcurrentQueue<string> _responseIds = new();

    private sealed class Operation
    {
        public volatile bool Done;
        public string Status = "InProgress";
        public JsonObject? Properties;
        public Action? OnDone;
    }

    public FakeArm()
    {
        Certificate = MakeCertificate();
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0, o => o.UseHttps(Certificate)));
        _app = builder.Build();
        _app.Run(HandleAsync);
        _app.StartAsync().GetAwaiter().GetResult();
        string address = _app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        Endpoint = new Uri(address);
    }

    public X509Certificate2 Certificate { get; }

    public Uri Endpoint { get; }

    /// <summary>Every request, in order.</summary>
    public IReadOnlyList<ArmCall> Calls => _calls.ToArray();

    /// <summary>Every x-ms-request-id and correlation id this server sent.</summary>
    public IReadOnlyList<string> ResponseIds => _responseIds.ToArray();

    /// <summary>When true, runCommand is accepted but never finishes.</summary>
    public bool RunCommandNeverFinishes { get; set; }

    /// <summary>Extra environment for the guest script (e.g. PATH for test tools).</summary>
    public Dictionary<string, string> GuestEnvironment { get; } = new();

    /// <summary>The scripts runCommand received (the whole request body's script lines, joined).</summary>
    public ConcurrentQueue<string> Scripts { get; } = new();

    /// <summary>Guest script output (stdout) of the last run.</summary>
    public string? LastGuestOutput { get; private set; }

    /// <summary>An HttpClientHandler that trusts exactly this server's certificate.</summary>
    public HttpClientHandler CreateHandler() => new()
    {
        ServerCertificateCustomValidationCallback = (_, cert, _, _) => cert is not null && cert.RawData.AsSpan().SequenceEqual(Certificate.RawData),
    };

    /// <summary>Adds a VM with its NICs, OS disk and instance view.</summary>
    public string AddVm(string subscription, string group, string name, string osType = "Linux", string power = "running",
        string agent = "Ready", bool hibernationEnabled = false, int nics = 2, string? nsgOnNics = null)
    {
        OperationSubscription = subscription;
        string rg = $"/subscriptions/{subscription}/resourceGroups/{group}";
        string vmId = $"{rg}/providers/Microsoft.Compute/virtualMachines/{name}";
        var nicRefs = new JsonArray();
        for (int i = 0; i < nics; i++)
        {
            string nicId = $"{rg}/providers/Microsoft.Network/networkInterfaces/{name}-nic{i}";
            var nicProps = new JsonObject { ["provisioningState"] = "Succeeded", ["ipConfigurations"] = new JsonArray() };
            if (nsgOnNics is not null)
            {
                nicProps["networkSecurityGroup"] = new JsonObject { ["id"] = nsgOnNics };
            }
            _resources[nicId] = new JsonObject
            {
                ["id"] = nicId, ["name"] = $"{name}-nic{i}", ["type"] = "Microsoft.Network/networkInterfaces",
                ["location"] = "westeurope", ["properties"] = nicProps,
            };
            nicRefs.Add(new JsonObject { ["id"] = nicId, ["properties"] = new JsonObject { ["primary"] = i == 0 } });
        }
        string diskId = $"{rg}/providers/Microsoft.Compute/disks/{name}-osdisk";
        _resources[vmId] = new JsonObject
        {
            ["id"] = vmId, ["name"] = name, ["type"] = "Microsoft.Compute/virtualMachines", ["location"] = "westeurope",
            ["properties"] = new JsonObject
            {
                ["vmId"] = Guid.NewGuid().ToString(),
                ["hardwareProfile"] = new JsonObject { ["vmSize"] = "Standard_D2s_v5" },
                ["additionalCapabilities"] = new JsonObject { ["hibernationEnabled"] = hibernationEnabled },
                ["storageProfile"] = new JsonObject
                {
                    ["osDisk"] = new JsonObject
                    {
                        ["osType"] = osType, ["name"] = $"{name}-osdisk", ["createOption"] = "FromImage",
                        ["managedDisk"] = new JsonObject { ["id"] = diskId },
                    },
                },
                ["networkProfile"] = new JsonObject { ["networkInterfaces"] = nicRefs },
                ["provisioningState"] = "Succeeded",
            },
        };
        _resources[vmId + "/instanceView"] = new JsonObject
        {
            ["computerName"] = name,
            ["osName"] = osType == "Linux" ? "debian" : "Windows Server 2022 Datacenter",
            ["vmAgent"] = new JsonObject
            {
                ["vmAgentVersion"] = "2.9.1.1",
                ["statuses"] = new JsonArray(new JsonObject
                {
                    ["code"] = "ProvisioningState/succeeded", ["level"] = "Info", ["displayStatus"] = agent,
                }),
            },
            ["statuses"] = new JsonArray(
                new JsonObject { ["code"] = "ProvisioningState/succeeded", ["level"] = "Info", ["displayStatus"] = "Provisioning succeeded" },
                new JsonObject { ["code"] = $"PowerState/{power}", ["level"] = "Info", ["displayStatus"] = $"VM {power}" }),
        };
        return vmId;
    }

    /// <summary>Adds a network security group.</summary>
    public string AddNsg(string subscription, string group, string name)
    {
        string id = $"/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.Network/networkSecurityGroups/{name}";
        _resources[id] = new JsonObject
        {
            ["id"] = id, ["name"] = name, ["type"] = "Microsoft.Network/networkSecurityGroups", ["location"] = "westeurope",
            ["properties"] = new JsonObject { ["securityRules"] = new JsonArray() },
        };
        return id;
    }

    /// <summary>A resource's current JSON (null when absent).</summary>
    public JsonObject? Resource(string id) => _resources.TryGetValue(id, out JsonObject? o) ? o : null;

    /// <summary>Calls that change something (anything but GET).</summary>
    public IReadOnlyList<ArmCall> MutatingCalls => Calls.Where(c => c.Method != "GET").ToArray();

    private async Task HandleAsync(HttpContext context)
    {
        HttpRequest request = context.Request;
        string body = await new StreamReader(request.Body, Encoding.UTF8).ReadToEndAsync();
        string path = request.Path.Value ?? "";
        string? auth = request.Headers.Authorization.FirstOrDefault();
        _calls.Enqueue(new ArmCall(request.Method, path, request.QueryString.Value ?? "", body, auth));
        string requestId = Guid.NewGuid().ToString();
        string correlation = Guid.NewGuid().ToString();
        _responseIds.Enqueue(requestId);
        _responseIds.Enqueue(correlation);
        context.Response.Headers["x-ms-request-id"] = requestId;
        context.Response.Headers["x-ms-correlation-request-id"] = correlation;
        if (auth is null || !auth.StartsWith("Bearer ", StringComparison.Ordinal))
        {
            await Json(context, 401, new JsonObject { ["error"] = Error("AuthenticationFailed", "no bearer token") });
            return;
        }
        if (!request.Query.ContainsKey("api-version"))
        {
            await Json(context, 400, new JsonObject { ["error"] = Error("MissingApiVersionParameter", "api-version missing") });
            return;
        }
        if (s_operation.IsMatch(path))
        {
            await OperationAsync(context, path, request.Query.ContainsKey("monitor"));
            return;
        }
        string method = request.Method;
        if (method == "POST" && path.EndsWith("/runCommand", StringComparison.OrdinalIgnoreCase))
        {
            string vmId = path[..^"/runCommand".Length];
            if (!_resources.ContainsKey(vmId))
            {
                await NotFound(context, vmId);
                return;
            }
            JsonNode input = JsonNode.Parse(body)!;
            string script = string.Join("\n", input["script"]!.AsArray().Select(n => n!.GetValue<string>()));
            Scripts.Enqueue(script);
            string commandId = input["commandId"]!.GetValue<string>();
            var op = new Operation();
            string opId = Start(op);
            if (!RunCommandNeverFinishes)
            {
                _ = Task.Run(() => RunGuest(op, commandId, script));
            }
            Accepted(context, opId);
            return;
        }
        if (method == "POST" && path.EndsWith("/deallocate", StringComparison.OrdinalIgnoreCase))
        {
            string vmId = path[..^"/deallocate".Length];
            bool hibernate = string.Equals(request.Query["hibernate"], "true", StringComparison.OrdinalIgnoreCase);
            var op = new Operation();
            string opId = Start(op);
            op.OnDone = () => SetPower(vmId, hibernate ? "deallocated" : "deallocated", hibernate);
            _ = Task.Run(async () =>
            {
                await Task.Delay(200);
                op.OnDone();
                op.Status = "Succeeded";
                op.Done = true;
            });
            Accepted(context, opId);
            return;
        }
        if (method == "GET" && path.EndsWith("/instanceView", StringComparison.OrdinalIgnoreCase))
        {
            if (_resources.TryGetValue(path, out JsonObject? view))
            {
                await Json(context, 200, view);
            }
            else
            {
                await NotFound(context, path);
            }
            return;
        }
        if (method == "GET")
        {
            if (_resources.TryGetValue(path, out JsonObject? resource))
            {
                await Json(context, 200, resource);
            }
            else
            {
                await NotFound(context, path);
            }
            return;
        }
        if (method == "PUT" && path.Contains("/providers/Microsoft.Network/networkInterfaces/", StringComparison.OrdinalIgnoreCase))
        {
            if (!_resources.TryGetValue(path, out JsonObject? nic))
            {
                await NotFound(context, path);
                return;
            }
            JsonObject update = JsonNode.Parse(body)!.AsObject();
            JsonObject props = update["properties"]?.AsObject() ?? new JsonObject();
            props["provisioningState"] = "Succeeded";
            nic["properties"] = props.DeepClone();
            await Json(context, 200, nic);
            return;
        }
        if (method == "PUT" && path.Contains("/providers/Microsoft.Compute/snapshots/", StringComparison.OrdinalIgnoreCase))
        {
            JsonObject snapshot = JsonNode.Parse(body)!.AsObject();
            snapshot["id"] = path;
            snapshot["name"] = path[(path.LastIndexOf('/') + 1)..];
            snapshot["type"] = "Microsoft.Compute/snapshots";
            JsonObject props = snapshot["properties"]?.AsObject() ?? new JsonObject();
            props["provisioningState"] = "Succeeded";
            props["uniqueId"] = Guid.NewGuid().ToString();
            props["timeCreated"] = DateTimeOffset.UtcNow.ToString("O");
            _resources[path] = snapshot;
            var op = new Operation { Status = "Succeeded", Done = true };
            string opId = Start(op);
            context.Response.Headers["Azure-AsyncOperation"] = OperationUri(opId);
            await Json(context, 202, snapshot);
            return;
        }
        await Json(context, 405, new JsonObject { ["error"] = Error("NotSupportedByFake", $"{method} {path}") });
    }

    private void SetPower(string vmId, string state, bool hibernated)
    {
        JsonObject view = _resources[vmId + "/instanceView"];
        var statuses = new JsonArray(
            new JsonObject { ["code"] = "ProvisioningState/succeeded", ["level"] = "Info" },
            new JsonObject { ["code"] = $"PowerState/{state}", ["level"] = "Info" });
        if (hibernated)
        {
            statuses.Add(new JsonObject { ["code"] = "HibernationState/Hibernated", ["level"] = "Info" });
        }
        view["statuses"] = statuses;
    }

    private string Start(Operation op)
    {
        string id = Guid.NewGuid().ToString("N");
        _operations[id] = op;
        return id;
    }

    // Where Compute puts its long-running operations: .../locations/{region}/operations/{id}; the Location header adds monitor=true.
    private static readonly System.Text.RegularExpressions.Regex s_operation = new("^/subscriptions/[^/]+/providers/Microsoft.Compute/locations/[^/]+/operations/[^/]+$");

    private string OperationUri(string id) => new Uri(Endpoint, $"/subscriptions/{OperationSubscription}/providers/Microsoft.Compute/locations/westeurope/operations/{id}?api-version=2023-07-01").AbsoluteUri;

    /// <summary>The subscription in operation URLs (the last one a VM was added to).</summary>
    private string OperationSubscription { get; set; } = "00000000-0000-0000-0000-000000000000";

    private void Accepted(HttpContext context, string opId)
    {
        context.Response.StatusCode = 202;
        context.Response.Headers["Azure-AsyncOperation"] = OperationUri(opId);
        context.Response.Headers["Location"] = OperationUri(opId) + "&monitor=true";
        context.Response.Headers["Retry-After"] = "0";
    }

    private async Task OperationAsync(HttpContext context, string path, bool result)
    {
        string id = path[(path.LastIndexOf('/') + 1)..];
        if (!_operations.TryGetValue(id, out Operation? op))
        {
            await NotFound(context, path);
            return;
        }
        if (!op.Done)
        {
            context.Response.Headers["Retry-After"] = "0";
            if (result)
            {
                context.Response.StatusCode = 202;
                context.Response.Headers["Location"] = new Uri(Endpoint, path + "?api-version=2023-07-01&monitor=true").AbsoluteUri;
                return;
            }
            await Json(context, 200, new JsonObject { ["status"] = "InProgress", ["name"] = id });
            return;
        }
        if (result)
        {
            await Json(context, 200, op.Properties?["output"]?.DeepClone().AsObject() ?? new JsonObject());
            return;
        }
        var status = new JsonObject { ["status"] = op.Status, ["name"] = id };
        if (op.Properties is not null)
        {
            status["properties"] = op.Properties.DeepClone();
        }
        if (op.Status == "Failed")
        {
            status["error"] = Error("VMExtensionProvisioningError", "guest script failed");
        }
        await Json(context, 200, status);
    }

    private void RunGuest(Operation op, string commandId, string script)
    {
        string file = Path.Combine(Path.GetTempPath(), "cloudmem-fakearm-" + Guid.NewGuid().ToString("N") + ".sh");
        File.WriteAllText(file, script);
        string stdout = "", stderr = "";
        int exit;
        try
        {
            if (commandId != "RunShellScript")
            {
                stderr = $"the fake ARM runs only RunShellScript, not {commandId}";
                exit = 1;
            }
            else
            {
                var start = new ProcessStartInfo("/bin/sh") { RedirectStandardOutput = true, RedirectStandardError = true };
                start.ArgumentList.Add(file);
                foreach ((string key, string value) in GuestEnvironment)
                {
                    start.Environment[key] = value;
                }
                using Process process = Process.Start(start)!;
                Task<string> o = process.StandardOutput.ReadToEndAsync();
                Task<string> e = process.StandardError.ReadToEndAsync();
                process.WaitForExit();
                stdout = o.Result;
                stderr = e.Result;
                exit = process.ExitCode;
            }
        }
        finally
        {
            File.Delete(file);
        }
        LastGuestOutput = stdout + stderr;
        // Linux Run Command reports one status whose message holds both streams (and succeeds even on exit != 0).
        op.Properties = new JsonObject
        {
            ["output"] = new JsonObject
            {
                ["value"] = new JsonArray(new JsonObject
                {
                    ["code"] = "ProvisioningState/succeeded",
                    ["level"] = "Info",
                    ["displayStatus"] = "Provisioning succeeded",
                    ["message"] = $"Enable succeeded: \n[stdout]\n{stdout}\n[stderr]\n{stderr}\n[exit code {exit}]",
                }),
            },
        };
        op.Status = "Succeeded";
        op.Done = true;
    }

    private static JsonObject Error(string code, string message) => new() { ["code"] = code, ["message"] = message };

    private static Task NotFound(HttpContext context, string id)
        => Json(context, 404, new JsonObject { ["error"] = Error("ResourceNotFound", $"The resource '{id}' was not found.") });

    private static async Task Json(HttpContext context, int status, JsonObject body)
    {
        context.Response.StatusCode = status;
        context.Response.ContentType = "application/json";
        await context.Response.WriteAsync(body.ToJsonString());
    }

    internal static X509Certificate2 MakeCertificate()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=127.0.0.1", key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddIpAddress(IPAddress.Loopback);
        san.AddDnsName("localhost");
        request.CertificateExtensions.Add(san.Build());
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
        using X509Certificate2 cert = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddHours(2));
        // Kestrel needs the key in an exportable, persisted form on Linux: round trip through PKCS#12.
        return X509CertificateLoader.LoadPkcs12(cert.Export(X509ContentType.Pkcs12), null);
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
        Certificate.Dispose();
    }
}
