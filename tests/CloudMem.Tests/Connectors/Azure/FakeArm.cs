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
/// A local HTTPS server speaking the ARM REST calls the Azure connector makes (VM, instance view, managed run commands
/// (PUT/GET with $expand=instanceView/DELETE), deallocate with hibernate, NICs, NSGs, managed disks and snapshots
/// (<c>FakeArm.Disks.cs</c>).
/// Its run command really runs the guest script (sh) on this machine, its parameters and protectedParameters in the
/// environment as on Linux, so the script's downloads and uploads hit azurite; the protected parameters are never
/// returned by a GET, as on Azure. TLS with a certificate made here; clients trust exactly that certificate (<see cref="CreateHandler"/>).
/// Every response carries x-ms-request-id and x-ms-correlation-request-id.
/// </summary>
public sealed partial class FakeArm : IAsyncDisposable
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
        public Action? OnDone;
        public JsonObject? Result;
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

    /// <summary>A command put before the guest's shell (e.g. strace and its options).</summary>
    public IReadOnlyList<string> GuestPrefix { get; set; } = [];

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
        string diskId = AddDisk(rg, $"{name}-osdisk");
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

    /// <summary>Gives a VM a system-assigned and one user-assigned identity.</summary>
    public void AddIdentity(string vmId, string userAssigned)
        => _resources[vmId]["identity"] = new JsonObject
        {
            ["type"] = "SystemAssigned, UserAssigned",
            ["principalId"] = "11111111-2222-3333-4444-555555555555",
            ["tenantId"] = "ab1f708d-0000-0000-0000-000000000000",
            ["userAssignedIdentities"] = new JsonObject { [userAssigned] = new JsonObject { ["principalId"] = "66666666-7777-8888-9999-000000000000", ["clientId"] = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee" } },
        };

    /// <summary>Puts a public IP on the first IP configuration of a NIC.</summary>
    public void AddPublicIp(string nicId, string publicIpId)
        => _resources[nicId]["properties"]!["ipConfigurations"] = new JsonArray(new JsonObject
        {
            ["name"] = "ipconfig1",
            ["properties"] = new JsonObject { ["privateIPAddress"] = "10.0.0.4", ["publicIPAddress"] = new JsonObject { ["id"] = publicIpId } },
        });

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
        if (s_runCommand.Match(path) is { Success: true } rc)
        {
            await ManagedRunCommandAsync(context, method, path, rc.Groups[1].Value, body);
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
        if (await SnapshotAsync(context, method, path, body))
        {
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
        if (method == "PATCH" && path.Contains("/providers/Microsoft.Compute/virtualMachines/", StringComparison.OrdinalIgnoreCase)
            && _resources.TryGetValue(path, out JsonObject? patchedVm))
        {
            JsonObject patch = JsonNode.Parse(body)!.AsObject();
            if (patch["identity"]?["type"]?.GetValue<string>() is "None")
            {
                patchedVm.Remove("identity");
            }
            await Json(context, 200, patchedVm);
            return;
        }
        if (method == "PUT" && (path.Contains("/providers/Microsoft.Network/networkInterfaces/", StringComparison.OrdinalIgnoreCase)
            || path.Contains("/providers/Microsoft.Network/networkSecurityGroups/", StringComparison.OrdinalIgnoreCase)))
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
            await Json(context, 200, op.Result?.DeepClone().AsObject() ?? new JsonObject());
            return;
        }
        var status = new JsonObject { ["status"] = op.Status, ["name"] = id };
        if (op.Status == "Failed")
        {
            status["error"] = Error("VMExtensionProvisioningError", "guest script failed");
        }
        await Json(context, 200, status);
    }

    // .../virtualMachines/{vm}/runCommands/{name}: the managed (v2) run command resource.
    private static readonly System.Text.RegularExpressions.Regex s_runCommand = new("^(/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft.Compute/virtualMachines/[^/]+)/runCommands/[^/]+$", System.Text.RegularExpressions.RegexOptions.IgnoreCase);

    /// <summary>Names of the run commands deleted, in order.</summary>
    public ConcurrentQueue<string> DeletedRunCommands { get; } = new();

    /// <summary>The environment the guest script got from parameters and protectedParameters (last run).</summary>
    public IReadOnlyDictionary<string, string>? LastGuestParameters { get; private set; }

    private async Task ManagedRunCommandAsync(HttpContext context, string method, string path, string vmId, string body)
    {
        if (!_resources.ContainsKey(vmId))
        {
            await NotFound(context, vmId);
            return;
        }
        if (method == "GET")
        {
            if (_resources.TryGetValue(path, out JsonObject? found))
            {
                JsonObject copy = found.DeepClone().AsObject();
                if (!string.Equals(context.Request.Query["$expand"], "instanceView", StringComparison.Ordinal))
                {
                    copy["properties"]!.AsObject().Remove("instanceView");
                }
                await Json(context, 200, copy);
            }
            else
            {
                await NotFound(context, path);
            }
            return;
        }
        if (method == "DELETE")
        {
            DeletedRunCommands.Enqueue(path[(path.LastIndexOf('/') + 1)..]);
            context.Response.StatusCode = _resources.TryRemove(path, out _) ? 200 : 204;
            return;
        }
        if (method != "PUT")
        {
            await Json(context, 405, new JsonObject { ["error"] = Error("NotSupportedByFake", $"{method} {path}") });
            return;
        }
        JsonObject input = JsonNode.Parse(body)!.AsObject();
        JsonObject props = input["properties"]!.AsObject();
        string script = props["source"]?["script"]?.GetValue<string>() ?? "";
        Scripts.Enqueue(script);
        var environment = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (string list in new[] { "parameters", "protectedParameters" })
        {
            foreach (JsonNode? p in props[list]?.AsArray() ?? [])
            {
                environment[p!["name"]!.GetValue<string>()] = p["value"]!.GetValue<string>();
            }
        }
        int timeout = props["timeoutInSeconds"]?.GetValue<int>() ?? 5400;
        // What ARM stores and returns: never the protected parameters.
        JsonObject stored = input.DeepClone().AsObject();
        stored["id"] = path;
        stored["name"] = path[(path.LastIndexOf('/') + 1)..];
        stored["type"] = "Microsoft.Compute/virtualMachines/runCommands";
        JsonObject storedProps = stored["properties"]!.AsObject();
        storedProps.Remove("protectedParameters");
        storedProps["provisioningState"] = "Succeeded";
        storedProps["instanceView"] = new JsonObject { ["executionState"] = "Pending" };
        _resources[path] = stored;
        if (!RunCommandNeverFinishes)
        {
            _ = Task.Run(() => RunGuest(stored, script, environment, timeout));
        }
        else
        {
            storedProps["instanceView"] = new JsonObject { ["executionState"] = "Running" };
        }
        var op = new Operation { Status = "Succeeded", Done = true };
        context.Response.Headers["Azure-AsyncOperation"] = OperationUri(Start(op));
        await Json(context, 201, stored);
    }

    private void RunGuest(JsonObject stored, string script, Dictionary<string, string> parameters, int timeoutSeconds)
    {
        string file = Path.Combine(Path.GetTempPath(), "cloudmem-fakearm-" + Guid.NewGuid().ToString("N") + ".sh");
        File.WriteAllText(file, script);
        string stdout, stderr;
        int exit;
        string state;
        DateTimeOffset started = DateTimeOffset.UtcNow;
        stored["properties"]!["instanceView"] = new JsonObject { ["executionState"] = "Running", ["startTime"] = started.ToString("O") };
        try
        {
            // Linux managed Run Command: named parameters (protected or not) reach the script as environment variables.
            var start = new ProcessStartInfo(GuestPrefix.Count > 0 ? GuestPrefix[0] : "/bin/sh") { RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (string arg in GuestPrefix.Skip(1).Concat(GuestPrefix.Count > 0 ? ["/bin/sh"] : []))
            {
                start.ArgumentList.Add(arg);
            }
            start.ArgumentList.Add(file);
            foreach ((string key, string value) in GuestEnvironment.Concat(parameters))
            {
                start.Environment[key] = value;
            }
            LastGuestParameters = parameters;
            using Process process = Process.Start(start)!;
            Task<string> o = process.StandardOutput.ReadToEndAsync();
            Task<string> e = process.StandardError.ReadToEndAsync();
            bool finished = process.WaitForExit(TimeSpan.FromSeconds(timeoutSeconds));
            if (!finished)
            {
                process.Kill(entireProcessTree: true);
                process.WaitForExit();
            }
            stdout = o.Result;
            stderr = e.Result;
            exit = finished ? process.ExitCode : -1;
            state = !finished ? "TimedOut" : exit == 0 ? "Succeeded" : "Failed";
        }
        finally
        {
            File.Delete(file);
        }
        LastGuestOutput = stdout + stderr;
        stored["properties"]!["instanceView"] = new JsonObject
        {
            ["executionState"] = state,
            ["executionMessage"] = state == "Succeeded" ? "" : $"script {state.ToLowerInvariant()}",
            ["exitCode"] = exit,
            ["output"] = stdout,
            ["error"] = stderr,
            ["startTime"] = started.ToString("O"),
            ["endTime"] = DateTimeOffset.UtcNow.ToString("O"),
        };
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
