using System.Net;
using System.Text.Json;
using System.Text.Json.Nodes;
using CloudMem.Connectors.Core;
using Refit;

namespace CloudMem.Connectors.VSphere;

/// <summary>
/// The VI/JSON wire protocol of vCenter 8.0U1+ (<c>/sdk/vim25/{release}/{type}/{moId}/{method or property}</c>):
/// properties are GETs, methods are POSTs with the parameters as a JSON object. The session token travels in the
/// <c>vmware-api-session-id</c> header (added by <see cref="VimJsonSessionHandler"/>).
/// </summary>
public interface IVimJsonApi
{
    /// <summary>ServiceInstance content (no session needed).</summary>
    [Get("/sdk/vim25/{release}/ServiceInstance/ServiceInstance/content")]
    Task<IApiResponse<JsonElement>> GetServiceContentAsync(string release, CancellationToken cancellationToken);

    /// <summary>Reads one property of a managed object.</summary>
    [Get("/sdk/vim25/{release}/{type}/{moId}/{property}")]
    Task<IApiResponse<JsonElement>> GetPropertyAsync(string release, string type, string moId, string property, CancellationToken cancellationToken);

    /// <summary>Invokes a method on a managed object with its parameters as a JSON object.</summary>
    [Post("/sdk/vim25/{release}/{type}/{moId}/{method}")]
    Task<IApiResponse<JsonElement>> InvokeAsync(string release, string type, string moId, string method, [Body] JsonObject parameters, CancellationToken cancellationToken);
}

/// <summary>
/// Adds the session token to every VI/JSON request, remembers the token a Login response carries, and logs in again
/// once when the server answers 401 (expired session).
/// </summary>
public sealed class VimJsonSessionHandler : DelegatingHandler
{
    /// <summary>The session header.</summary>
    public const string SessionHeader = "vmware-api-session-id";

    /// <summary>The current token (null before Login).</summary>
    public string? SessionKey { get; set; }

    /// <summary>Called to log in again after a 401; null: no re-login.</summary>
    public Func<CancellationToken, Task>? Relogin { get; set; }

    /// <inheritdoc />
    protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        bool isLogin = request.RequestUri?.AbsolutePath.EndsWith("/Login", StringComparison.Ordinal) == true;
        HttpResponseMessage response = await SendWithSessionAsync(request, cancellationToken).ConfigureAwait(false);
        if (response.StatusCode == HttpStatusCode.Unauthorized && !isLogin && Relogin is not null)
        {
            response.Dispose();
            await Relogin(cancellationToken).ConfigureAwait(false);
            using HttpRequestMessage again = await CloneAsync(request).ConfigureAwait(false);
            response = await SendWithSessionAsync(again, cancellationToken).ConfigureAwait(false);
        }
        if (isLogin && response.Headers.TryGetValues(SessionHeader, out IEnumerable<string>? values))
        {
            SessionKey = values.FirstOrDefault();
        }
        return response;
    }

    private Task<HttpResponseMessage> SendWithSessionAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        request.Headers.Remove(SessionHeader);
        if (SessionKey is not null)
        {
            request.Headers.TryAddWithoutValidation(SessionHeader, SessionKey);
        }
        return base.SendAsync(request, cancellationToken);
    }

    private static async Task<HttpRequestMessage> CloneAsync(HttpRequestMessage request)
    {
        var clone = new HttpRequestMessage(request.Method, request.RequestUri) { Version = request.Version };
        if (request.Content is not null)
        {
            byte[] body = await request.Content.ReadAsByteArrayAsync().ConfigureAwait(false);
            clone.Content = new ByteArrayContent(body);
            foreach (KeyValuePair<string, IEnumerable<string>> header in request.Content.Headers)
            {
                clone.Content.Headers.TryAddWithoutValidation(header.Key, header.Value);
            }
        }
        foreach (KeyValuePair<string, IEnumerable<string>> header in request.Headers)
        {
            clone.Headers.TryAddWithoutValidation(header.Key, header.Value);
        }
        return clone;
    }
}

/// <summary><see cref="IVimClient"/> over VI/JSON (Refit).</summary>
public sealed class VimJsonClient : IVimClient
{
    /// <summary>The release in the URL when none is given (the first with VI/JSON).</summary>
    public const string DefaultRelease = "8.0.1.0";

    private readonly HttpClient _http;
    private readonly VimJsonSessionHandler _session;
    private readonly IVimJsonApi _api;
    private readonly string _release;
    private MoRef? _sessionManager;
    private MoRef? _searchIndex;
    private MoRef? _rootFolder;

    /// <summary>Creates a client for <paramref name="server"/> over <paramref name="handler"/> (owned by the client).</summary>
    public VimJsonClient(Uri server, HttpMessageHandler handler, string? release = null, TimeSpan? requestTimeout = null)
    {
        _release = release ?? DefaultRelease;
        _session = new VimJsonSessionHandler { InnerHandler = handler };
        _http = new HttpClient(_session) { BaseAddress = new Uri(server.GetLeftPart(UriPartial.Authority)), Timeout = requestTimeout ?? TimeSpan.FromMinutes(2) };
        _api = RestService.For<IVimJsonApi>(_http, new RefitSettings
        {
            ContentSerializer = new SystemTextJsonContentSerializer(new JsonSerializerOptions(JsonSerializerDefaults.Web)),
        });
    }

    /// <inheritdoc />
    public string Transport => "vi-json";

    /// <inheritdoc />
    public string? ServerDescription { get; private set; }

    /// <inheritdoc />
    public string? SessionKey => _session.SessionKey;

    /// <summary>True when the server answers the VI/JSON service content (used to pick the transport).</summary>
    public static async Task<bool> ProbeAsync(Uri server, HttpMessageHandler handler, string? release, CancellationToken cancellationToken)
    {
        using var http = new HttpClient(handler, disposeHandler: false) { BaseAddress = new Uri(server.GetLeftPart(UriPartial.Authority)), Timeout = TimeSpan.FromSeconds(30) };
        using HttpResponseMessage response = await http.GetAsync($"/sdk/vim25/{release ?? DefaultRelease}/ServiceInstance/ServiceInstance/content", cancellationToken).ConfigureAwait(false);
        string type = response.Content.Headers.ContentType?.MediaType ?? "";
        return response.IsSuccessStatusCode && type.Contains("json", StringComparison.OrdinalIgnoreCase);
    }

    /// <inheritdoc />
    public async Task ConnectAsync(CancellationToken cancellationToken)
    {
        JsonElement content = Ok(await _api.GetServiceContentAsync(_release, cancellationToken).ConfigureAwait(false), "ServiceInstance content");
        _sessionManager = ReadMoRef(content, "sessionManager") ?? throw new CaptureException("vSphere service content has no sessionManager");
        _searchIndex = ReadMoRef(content, "searchIndex");
        _rootFolder = ReadMoRef(content, "rootFolder");
        if (content.TryGetProperty("about", out JsonElement about) && about.TryGetProperty("fullName", out JsonElement fullName))
        {
            ServerDescription = fullName.GetString();
        }
    }

    /// <inheritdoc />
    public async Task<string> LoginAsync(string userName, string password, CancellationToken cancellationToken)
    {
        MoRef manager = _sessionManager ?? throw new InvalidOperationException("ConnectAsync first");
        var parameters = new JsonObject { ["userName"] = userName, ["password"] = password };
        JsonElement session = Ok(await _api.InvokeAsync(_release, manager.Type, manager.Value, "Login", parameters, cancellationToken).ConfigureAwait(false), "Login");
        if (_session.SessionKey is null)
        {
            throw new CaptureException("vSphere Login answered without a vmware-api-session-id header");
        }
        _session.Relogin = async token =>
        {
            _session.SessionKey = null;
            _session.Relogin = null; // once
            await LoginAsync(userName, password, token).ConfigureAwait(false);
        };
        return session.ValueKind == JsonValueKind.Object && session.TryGetProperty("userName", out JsonElement name) ? name.GetString() ?? userName : userName;
    }

    /// <inheritdoc />
    public async Task LogoutAsync(CancellationToken cancellationToken)
    {
        if (_sessionManager is null || _session.SessionKey is null)
        {
            return;
        }
        _session.Relogin = null;
        using IApiResponse<JsonElement> _ = await _api.InvokeAsync(_release, _sessionManager.Type, _sessionManager.Value, "Logout", [], cancellationToken).ConfigureAwait(false);
        _session.SessionKey = null;
    }

    /// <inheritdoc />
    public async Task<MoRef> FindVmAsync(string vm, string? datacenter, CancellationToken cancellationToken)
    {
        if (VmLocator.IsMoRef(vm))
        {
            return new MoRef("VirtualMachine", vm);
        }
        MoRef index = _searchIndex ?? throw new CaptureException("vSphere service content has no searchIndex");
        string path = vm.Contains('/', StringComparison.Ordinal)
            ? vm.TrimStart('/')
            : $"{datacenter ?? await SingleDatacenterAsync(cancellationToken).ConfigureAwait(false)}/vm/{vm}";
        JsonElement found = Ok(await _api.InvokeAsync(_release, index.Type, index.Value, "FindByInventoryPath", new JsonObject { ["inventoryPath"] = path }, cancellationToken).ConfigureAwait(false), "FindByInventoryPath", allowEmpty: true);
        MoRef? reference = AsMoRef(found);
        if (reference is null || reference.Type != "VirtualMachine")
        {
            throw new CaptureException($"no virtual machine at inventory path '{path}'");
        }
        return reference;
    }

    /// <inheritdoc />
    public async Task<VmSummary> GetVmAsync(MoRef vm, CancellationToken cancellationToken)
    {
        IApiResponse<JsonElement> nameResponse = await _api.GetPropertyAsync(_release, vm.Type, vm.Value, "name", cancellationToken).ConfigureAwait(false);
        if (nameResponse.StatusCode == HttpStatusCode.NotFound)
        {
            throw new CaptureException($"virtual machine {vm.Value} not found");
        }
        string name = Ok(nameResponse, "VirtualMachine name").GetString() ?? vm.Value;
        JsonElement runtime = Ok(await _api.GetPropertyAsync(_release, vm.Type, vm.Value, "runtime", cancellationToken).ConfigureAwait(false), "VirtualMachine runtime");
        string power = runtime.TryGetProperty("powerState", out JsonElement state) ? state.GetString() ?? "unknown" : "unknown";
        IReadOnlyList<SnapshotRef> snapshots = await ListSnapshotsAsync(vm, cancellationToken).ConfigureAwait(false);
        string datacenter = await DatacenterOfAsync(vm, cancellationToken).ConfigureAwait(false);
        return new VmSummary(vm, name, power, datacenter, snapshots.Count);
    }

    /// <inheritdoc />
    public async Task<MoRef> CreateSnapshotAsync(MoRef vm, string name, string description, bool memory, bool quiesce, CancellationToken cancellationToken)
    {
        var parameters = new JsonObject { ["name"] = name, ["description"] = description, ["memory"] = memory, ["quiesce"] = quiesce };
        JsonElement task = Ok(await _api.InvokeAsync(_release, vm.Type, vm.Value, "CreateSnapshot_Task", parameters, cancellationToken).ConfigureAwait(false), "CreateSnapshot_Task");
        return AsMoRef(task) ?? throw new CaptureException("CreateSnapshot_Task returned no task");
    }

    /// <inheritdoc />
    public async Task<MoRef> RemoveSnapshotAsync(MoRef snapshot, CancellationToken cancellationToken)
    {
        var parameters = new JsonObject { ["removeChildren"] = false, ["consolidate"] = true };
        JsonElement task = Ok(await _api.InvokeAsync(_release, snapshot.Type, snapshot.Value, "RemoveSnapshot_Task", parameters, cancellationToken).ConfigureAwait(false), "RemoveSnapshot_Task");
        return AsMoRef(task) ?? throw new CaptureException("RemoveSnapshot_Task returned no task");
    }

    /// <inheritdoc />
    public async Task<VimTaskInfo> GetTaskInfoAsync(MoRef task, CancellationToken cancellationToken)
    {
        JsonElement info = Ok(await _api.GetPropertyAsync(_release, task.Type, task.Value, "info", cancellationToken).ConfigureAwait(false), "Task info");
        VimTaskState state = VimTaskInfo.ParseState(info.TryGetProperty("state", out JsonElement s) ? s.GetString() : null);
        int? progress = info.TryGetProperty("progress", out JsonElement p) && p.ValueKind == JsonValueKind.Number ? p.GetInt32() : null;
        MoRef? result = info.TryGetProperty("result", out JsonElement r) ? AsMoRef(r) : null;
        string? error = null;
        if (info.TryGetProperty("error", out JsonElement e) && e.ValueKind == JsonValueKind.Object)
        {
            error = e.TryGetProperty("localizedMessage", out JsonElement message) && message.GetString() is { Length: > 0 } text
                ? text
                : e.TryGetProperty("fault", out JsonElement fault) && fault.TryGetProperty("_typeName", out JsonElement faultType) ? faultType.GetString() : "unknown fault";
        }
        return new VimTaskInfo(state, progress, result, error);
    }

    /// <inheritdoc />
    public async Task<VmLayout> GetLayoutAsync(MoRef vm, CancellationToken cancellationToken)
    {
        JsonElement layout = Ok(await _api.GetPropertyAsync(_release, vm.Type, vm.Value, "layoutEx", cancellationToken).ConfigureAwait(false), "VirtualMachine layoutEx");
        var files = new List<LayoutFile>();
        var snapshots = new List<LayoutSnapshot>();
        if (layout.ValueKind == JsonValueKind.Object && layout.TryGetProperty("file", out JsonElement fileArray) && fileArray.ValueKind == JsonValueKind.Array)
        {
            foreach (JsonElement file in fileArray.EnumerateArray())
            {
                files.Add(new LayoutFile(file.GetProperty("key").GetInt32(), file.GetProperty("name").GetString() ?? "",
                    file.TryGetProperty("type", out JsonElement type) ? type.GetString() ?? "" : "",
                    file.TryGetProperty("size", out JsonElement size) && size.ValueKind == JsonValueKind.Number ? size.GetInt64() : -1));
            }
        }
        if (layout.ValueKind == JsonValueKind.Object && layout.TryGetProperty("snapshot", out JsonElement snapshotArray) && snapshotArray.ValueKind == JsonValueKind.Array)
        {
            foreach (JsonElement snapshot in snapshotArray.EnumerateArray())
            {
                MoRef key = AsMoRef(snapshot.GetProperty("key")) ?? throw new CaptureException("layoutEx snapshot entry without a key");
                snapshots.Add(new LayoutSnapshot(key, snapshot.GetProperty("dataKey").GetInt32(),
                    snapshot.TryGetProperty("memoryKey", out JsonElement memory) && memory.ValueKind == JsonValueKind.Number ? memory.GetInt32() : -1));
            }
        }
        return new VmLayout(files, snapshots);
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<SnapshotRef>> ListSnapshotsAsync(MoRef vm, CancellationToken cancellationToken)
    {
        IApiResponse<JsonElement> response = await _api.GetPropertyAsync(_release, vm.Type, vm.Value, "snapshot", cancellationToken).ConfigureAwait(false);
        JsonElement info = Ok(response, "VirtualMachine snapshot", allowEmpty: true);
        var all = new List<SnapshotRef>();
        if (info.ValueKind == JsonValueKind.Object && info.TryGetProperty("rootSnapshotList", out JsonElement roots))
        {
            Flatten(roots, all);
        }
        return all;

        static void Flatten(JsonElement list, List<SnapshotRef> into)
        {
            if (list.ValueKind != JsonValueKind.Array)
            {
                return;
            }
            foreach (JsonElement tree in list.EnumerateArray())
            {
                if (tree.TryGetProperty("snapshot", out JsonElement snapshot) && AsMoRef(snapshot) is { } reference)
                {
                    into.Add(new SnapshotRef(reference, tree.TryGetProperty("name", out JsonElement name) ? name.GetString() ?? "" : ""));
                }
                if (tree.TryGetProperty("childSnapshotList", out JsonElement children))
                {
                    Flatten(children, into);
                }
            }
        }
    }

    /// <inheritdoc />
    public ValueTask DisposeAsync()
    {
        _http.Dispose();
        return ValueTask.CompletedTask;
    }

    private async Task<string> DatacenterOfAsync(MoRef entity, CancellationToken cancellationToken)
    {
        MoRef current = entity;
        for (int depth = 0; depth < 64; depth++)
        {
            JsonElement parent = Ok(await _api.GetPropertyAsync(_release, current.Type, current.Value, "parent", cancellationToken).ConfigureAwait(false), $"{current.Type} parent", allowEmpty: true);
            MoRef? next = AsMoRef(parent);
            if (next is null)
            {
                break;
            }
            if (next.Type == "Datacenter")
            {
                return Ok(await _api.GetPropertyAsync(_release, next.Type, next.Value, "name", cancellationToken).ConfigureAwait(false), "Datacenter name").GetString() ?? next.Value;
            }
            current = next;
        }
        throw new CaptureException($"no datacenter above {entity.Value} (needed for the datastore download path)");
    }

    private async Task<string> SingleDatacenterAsync(CancellationToken cancellationToken)
    {
        MoRef root = _rootFolder ?? throw new CaptureException("vSphere service content has no rootFolder");
        JsonElement children = Ok(await _api.GetPropertyAsync(_release, root.Type, root.Value, "childEntity", cancellationToken).ConfigureAwait(false), "rootFolder childEntity");
        var names = new List<string>();
        foreach (JsonElement child in children.ValueKind == JsonValueKind.Array ? children.EnumerateArray() : default)
        {
            if (AsMoRef(child) is { Type: "Datacenter" } dc)
            {
                names.Add(Ok(await _api.GetPropertyAsync(_release, dc.Type, dc.Value, "name", cancellationToken).ConfigureAwait(false), "Datacenter name").GetString() ?? dc.Value);
            }
        }
        return VmLocator.PickDatacenter(names);
    }

    private static MoRef? ReadMoRef(JsonElement parent, string property)
        => parent.TryGetProperty(property, out JsonElement value) ? AsMoRef(value) : null;

    private static MoRef? AsMoRef(JsonElement value)
        => value.ValueKind == JsonValueKind.Object && value.TryGetProperty("type", out JsonElement type) && value.TryGetProperty("value", out JsonElement id)
            ? new MoRef(type.GetString() ?? "", id.GetString() ?? "")
            : null;

    private static JsonElement Ok(IApiResponse<JsonElement> response, string what, bool allowEmpty = false)
    {
        using (response)
        {
            if (response.IsSuccessStatusCode)
            {
                if (response.Error is null)
                {
                    return response.Content;
                }
                if (allowEmpty)
                {
                    return default;
                }
            }
            if (allowEmpty && response.StatusCode == HttpStatusCode.NoContent)
            {
                return default;
            }
            throw new CaptureException($"vSphere {what} failed: HTTP {(int?)response.StatusCode} {Fault((response.Error as ApiException)?.Content ?? response.Error?.Message)}");
        }
    }

    private static string Fault(string? body)
    {
        if (string.IsNullOrWhiteSpace(body))
        {
            return "(no body)";
        }
        try
        {
            using var document = JsonDocument.Parse(body);
            JsonElement root = document.RootElement;
            string type = root.TryGetProperty("_typeName", out JsonElement t) ? t.GetString() ?? "" : "";
            string message = root.TryGetProperty("faultMessage", out JsonElement m) && m.ValueKind == JsonValueKind.Array && m.GetArrayLength() > 0
                && m[0].TryGetProperty("message", out JsonElement text) ? text.GetString() ?? "" : root.TryGetProperty("message", out JsonElement plain) ? plain.GetString() ?? "" : "";
            return $"{type} {message}".Trim();
        }
        catch (JsonException)
        {
            return body.Length > 200 ? body[..200] : body;
        }
    }
}

/// <summary>How a VM argument is read: moref, inventory path or name.</summary>
public static class VmLocator
{
    /// <summary>True for a moref: vm-42 (vCenter) or a bare number (ESXi).</summary>
    public static bool IsMoRef(string vm)
        => (vm.StartsWith("vm-", StringComparison.Ordinal) && vm.Length > 3 && vm[3..].All(char.IsAsciiDigit)) || (vm.Length > 0 && vm.All(char.IsAsciiDigit));

    /// <summary>The only datacenter, or a one-line error asking for --datacenter.</summary>
    public static string PickDatacenter(IReadOnlyList<string> names) => names.Count switch
    {
        1 => names[0],
        0 => throw new CaptureException("the server has no datacenter; give the VM as a moref or an inventory path"),
        _ => throw new CaptureException($"the server has {names.Count} datacenters ({string.Join(", ", names)}); say which with --datacenter"),
    };
}
