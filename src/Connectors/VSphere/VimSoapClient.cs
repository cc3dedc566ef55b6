using System.Globalization;
using System.Net;
using System.Text;
using System.Xml;
using System.Xml.Linq;
using CloudMem.Connectors.Core;

namespace CloudMem.Connectors.VSphere;

/// <summary>
/// <see cref="IVimClient"/> over the SOAP vim25 endpoint (<c>/sdk</c>) that every ESXi host and vCenter serves: a small
/// typed client that writes the few request bodies we need with System.Xml.Linq and reads the answers by element
/// name (urn:vim25). The session is the <c>vmware_soap_session</c> cookie Login sets.
/// </summary>
public sealed class VimSoapClient : IVimClient
{
    private static readonly XNamespace s_vim = "urn:vim25";
    private static readonly XNamespace s_soap = "http://schemas.xmlsoap.org/soap/envelope/";
    private static readonly XNamespace s_xsi = "http://www.w3.org/2001/XMLSchema-instance";
    private const long MaxResponseBytes = 64L << 20;

    private readonly HttpClient _http;
    private readonly Uri _endpoint;
    private string _soapAction = "urn:vim25";
    private string? _cookie;
    private MoRef? _sessionManager;
    private MoRef? _searchIndex;
    private MoRef? _rootFolder;
    private MoRef? _propertyCollector;

    /// <summary>Creates a client for <paramref name="server"/> (its /sdk endpoint) over <paramref name="handler"/> (owned).</summary>
    public VimSoapClient(Uri server, HttpMessageHandler handler, TimeSpan? requestTimeout = null)
    {
        _endpoint = new Uri(new Uri(server.GetLeftPart(UriPartial.Authority)), "/sdk");
        _http = new HttpClient(handler) { Timeout = requestTimeout ?? TimeSpan.FromMinutes(2) };
    }

    /// <inheritdoc />
    public string Transport => "soap";

    /// <inheritdoc />
    public string? ServerDescription { get; private set; }

    /// <inheritdoc />
    public string? SessionKey { get; private set; }

    /// <summary>The API type from the service content ("VirtualCenter" or "HostAgent").</summary>
    public string? ApiType { get; private set; }

    /// <inheritdoc />
    public async Task ConnectAsync(CancellationToken cancellationToken)
    {
        XElement content = await CallAsync("RetrieveServiceContent", [This(new MoRef("ServiceInstance", "ServiceInstance"))], cancellationToken).ConfigureAwait(false);
        XElement value = Returnval(content) ?? throw new CaptureException("vSphere RetrieveServiceContent returned nothing");
        _sessionManager = ReadMoRef(value.Element(s_vim + "sessionManager"));
        _searchIndex = ReadMoRef(value.Element(s_vim + "searchIndex"));
        _rootFolder = ReadMoRef(value.Element(s_vim + "rootFolder"));
        _propertyCollector = ReadMoRef(value.Element(s_vim + "propertyCollector"));
        XElement? about = value.Element(s_vim + "about");
        ServerDescription = about?.Element(s_vim + "fullName")?.Value;
        ApiType = about?.Element(s_vim + "apiType")?.Value;
        if (about?.Element(s_vim + "apiVersion")?.Value is { Length: > 0 } version)
        {
            _soapAction = $"urn:vim25/{version}";
        }
        if (_sessionManager is null || _propertyCollector is null)
        {
            throw new CaptureException("vSphere service content has no sessionManager or propertyCollector");
        }
    }

    /// <inheritdoc />
    public async Task<string> LoginAsync(string userName, string password, CancellationToken cancellationToken)
    {
        XElement response = await CallAsync("Login",
            [This(_sessionManager!), new XElement(s_vim + "userName", userName), new XElement(s_vim + "password", password)],
            cancellationToken).ConfigureAwait(false);
        XElement? session = Returnval(response);
        if (_cookie is null)
        {
            throw new CaptureException("vSphere Login answered without a vmware_soap_session cookie");
        }
        return session?.Element(s_vim + "userName")?.Value ?? userName;
    }

    /// <inheritdoc />
    public async Task LogoutAsync(CancellationToken cancellationToken)
    {
        if (_cookie is null || _sessionManager is null)
        {
            return;
        }
        await CallAsync("Logout", [This(_sessionManager)], cancellationToken).ConfigureAwait(false);
        _cookie = null;
        SessionKey = null;
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
        XElement response = await CallAsync("FindByInventoryPath", [This(index), new XElement(s_vim + "inventoryPath", path)], cancellationToken).ConfigureAwait(false);
        MoRef? found = ReadMoRef(Returnval(response));
        if (found is null || found.Type != "VirtualMachine")
        {
            throw new CaptureException($"no virtual machine at inventory path '{path}'");
        }
        return found;
    }

    /// <inheritdoc />
    public async Task<VmSummary> GetVmAsync(MoRef vm, CancellationToken cancellationToken)
    {
        Dictionary<string, XElement> properties = await RetrieveAsync(vm, ["name", "runtime.powerState"], cancellationToken).ConfigureAwait(false);
        string name = properties.TryGetValue("name", out XElement? n) ? n.Value : vm.Value;
        string power = properties.TryGetValue("runtime.powerState", out XElement? p) ? p.Value : "unknown";
        IReadOnlyList<SnapshotRef> snapshots = await ListSnapshotsAsync(vm, cancellationToken).ConfigureAwait(false);
        string datacenter = await DatacenterOfAsync(vm, cancellationToken).ConfigureAwait(false);
        return new VmSummary(vm, name, power, datacenter, snapshots.Count);
    }

    /// <inheritdoc />
    public async Task<MoRef> CreateSnapshotAsync(MoRef vm, string name, string description, bool memory, bool quiesce, CancellationToken cancellationToken)
    {
        XElement response = await CallAsync("CreateSnapshot_Task",
            [This(vm), new XElement(s_vim + "name", name), new XElement(s_vim + "description", description),
             new XElement(s_vim + "memory", Bool(memory)), new XElement(s_vim + "quiesce", Bool(quiesce))],
            cancellationToken).ConfigureAwait(false);
        return ReadMoRef(Returnval(response)) ?? throw new CaptureException("CreateSnapshot_Task returned no task");
    }

    /// <inheritdoc />
    public async Task<MoRef> RemoveSnapshotAsync(MoRef snapshot, CancellationToken cancellationToken)
    {
        XElement response = await CallAsync("RemoveSnapshot_Task",
            [This(snapshot), new XElement(s_vim + "removeChildren", "false"), new XElement(s_vim + "consolidate", "true")],
            cancellationToken).ConfigureAwait(false);
        return ReadMoRef(Returnval(response)) ?? throw new CaptureException("RemoveSnapshot_Task returned no task");
    }

    /// <inheritdoc />
    public async Task<VimTaskInfo> GetTaskInfoAsync(MoRef task, CancellationToken cancellationToken)
    {
        Dictionary<string, XElement> properties = await RetrieveAsync(task, ["info"], cancellationToken).ConfigureAwait(false);
        XElement info = properties.GetValueOrDefault("info") ?? throw new CaptureException($"task {task.Value} has no info");
        VimTaskState state = VimTaskInfo.ParseState(info.Element(s_vim + "state")?.Value);
        int? progress = int.TryParse(info.Element(s_vim + "progress")?.Value, NumberStyles.Integer, CultureInfo.InvariantCulture, out int value) ? value : null;
        MoRef? result = ReadMoRef(info.Element(s_vim + "result"));
        XElement? error = info.Element(s_vim + "error");
        string? message = error is null ? null
            : error.Element(s_vim + "localizedMessage")?.Value is { Length: > 0 } text ? text
            : error.Element(s_vim + "fault")?.Attribute(s_xsi + "type")?.Value ?? "unknown fault";
        return new VimTaskInfo(state, progress, result, message);
    }

    /// <inheritdoc />
    public async Task<VmLayout> GetLayoutAsync(MoRef vm, CancellationToken cancellationToken)
    {
        Dictionary<string, XElement> properties = await RetrieveAsync(vm, ["layoutEx"], cancellationToken).ConfigureAwait(false);
        var files = new List<LayoutFile>();
        var snapshots = new List<LayoutSnapshot>();
        if (properties.TryGetValue("layoutEx", out XElement? layout))
        {
            foreach (XElement file in layout.Elements(s_vim + "file"))
            {
                files.Add(new LayoutFile(Int(file.Element(s_vim + "key")), file.Element(s_vim + "name")?.Value ?? "",
                    file.Element(s_vim + "type")?.Value ?? "", long.TryParse(file.Element(s_vim + "size")?.Value, NumberStyles.Integer, CultureInfo.InvariantCulture, out long size) ? size : -1));
            }
            foreach (XElement snapshot in layout.Elements(s_vim + "snapshot"))
            {
                MoRef key = ReadMoRef(snapshot.Element(s_vim + "key")) ?? throw new CaptureException("layoutEx snapshot entry without a key");
                XElement? memory = snapshot.Element(s_vim + "memoryKey");
                snapshots.Add(new LayoutSnapshot(key, Int(snapshot.Element(s_vim + "dataKey")), memory is null ? -1 : Int(memory)));
            }
        }
        return new VmLayout(files, snapshots);
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<SnapshotRef>> ListSnapshotsAsync(MoRef vm, CancellationToken cancellationToken)
    {
        Dictionary<string, XElement> properties = await RetrieveAsync(vm, ["snapshot"], cancellationToken).ConfigureAwait(false);
        if (!properties.TryGetValue("snapshot", out XElement? info))
        {
            return [];
        }
        return [.. info.Descendants()
            .Where(e => e.Name == s_vim + "rootSnapshotList" || e.Name == s_vim + "childSnapshotList")
            .Select(e => ReadMoRef(e.Element(s_vim + "snapshot")) is { } reference ? new SnapshotRef(reference, e.Element(s_vim + "name")?.Value ?? "") : null)
            .OfType<SnapshotRef>()];
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
            Dictionary<string, XElement> properties = await RetrieveAsync(current, ["parent"], cancellationToken).ConfigureAwait(false);
            MoRef? parent = ReadMoRef(properties.GetValueOrDefault("parent"));
            if (parent is null)
            {
                break;
            }
            if (parent.Type == "Datacenter")
            {
                Dictionary<string, XElement> dc = await RetrieveAsync(parent, ["name"], cancellationToken).ConfigureAwait(false);
                return dc.TryGetValue("name", out XElement? name) ? name.Value : parent.Value;
            }
            current = parent;
        }
        throw new CaptureException($"no datacenter above {entity.Value} (needed for the datastore download path)");
    }

    private async Task<string> SingleDatacenterAsync(CancellationToken cancellationToken)
    {
        MoRef root = _rootFolder ?? throw new CaptureException("vSphere service content has no rootFolder");
        Dictionary<string, XElement> properties = await RetrieveAsync(root, ["childEntity"], cancellationToken).ConfigureAwait(false);
        var names = new List<string>();
        foreach (MoRef child in properties.GetValueOrDefault("childEntity")?.Elements().Select(ReadMoRef).OfType<MoRef>() ?? [])
        {
            if (child.Type == "Datacenter")
            {
                Dictionary<string, XElement> dc = await RetrieveAsync(child, ["name"], cancellationToken).ConfigureAwait(false);
                names.Add(dc.TryGetValue("name", out XElement? name) ? name.Value : child.Value);
            }
        }
        return VmLocator.PickDatacenter(names);
    }

    /// <summary>RetrievePropertiesEx for one object; the properties it has, by path (unset ones are absent).</summary>
    private async Task<Dictionary<string, XElement>> RetrieveAsync(MoRef obj, string[] paths, CancellationToken cancellationToken)
    {
        var propSet = new XElement(s_vim + "propSet", new XElement(s_vim + "type", obj.Type));
        foreach (string path in paths)
        {
            propSet.Add(new XElement(s_vim + "pathSet", path));
        }
        var specSet = new XElement(s_vim + "specSet", propSet,
            new XElement(s_vim + "objectSet", new XElement(s_vim + "obj", new XAttribute("type", obj.Type), obj.Value)));
        XElement response = await CallAsync("RetrievePropertiesEx", [This(_propertyCollector!), specSet, new XElement(s_vim + "options")], cancellationToken).ConfigureAwait(false);
        var result = new Dictionary<string, XElement>(StringComparer.Ordinal);
        XElement? objects = Returnval(response)?.Element(s_vim + "objects");
        foreach (XElement property in objects?.Elements(s_vim + "propSet") ?? [])
        {
            if (property.Element(s_vim + "name")?.Value is { } name && property.Element(s_vim + "val") is { } val)
            {
                result[name] = val;
            }
        }
        return result;
    }

    /// <summary>Posts one SOAP call and returns the body's first element (the response); faults become CaptureExceptions.</summary>
    private async Task<XElement> CallAsync(string method, object[] parameters, CancellationToken cancellationToken)
    {
        var envelope = new XDocument(new XElement(s_soap + "Envelope",
            new XAttribute(XNamespace.Xmlns + "soapenv", s_soap.NamespaceName),
            new XElement(s_soap + "Body", new XElement(s_vim + method, parameters))));
        using var request = new HttpRequestMessage(HttpMethod.Post, _endpoint)
        {
            Content = new StringContent(envelope.ToString(SaveOptions.DisableFormatting), Encoding.UTF8, "text/xml"),
        };
        request.Headers.TryAddWithoutValidation("SOAPAction", _soapAction);
        if (_cookie is not null)
        {
            request.Headers.TryAddWithoutValidation("Cookie", _cookie);
        }
        using HttpResponseMessage response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken).ConfigureAwait(false);
        if (response.Headers.TryGetValues("Set-Cookie", out IEnumerable<string>? cookies))
        {
            foreach (string cookie in cookies)
            {
                string pair = cookie.Split(';', 2)[0].Trim();
                if (pair.StartsWith("vmware_soap_session=", StringComparison.Ordinal))
                {
                    _cookie = pair;
                    SessionKey = pair["vmware_soap_session=".Length..].Trim('"');
                }
            }
        }
        if (response.Content.Headers.ContentLength > MaxResponseBytes)
        {
            throw new CaptureException($"vSphere {method}: response of {response.Content.Headers.ContentLength} bytes is larger than {MaxResponseBytes}");
        }
        XDocument document;
        try
        {
            await using Stream body = await response.Content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false);
            document = await XDocument.LoadAsync(body, LoadOptions.None, cancellationToken).ConfigureAwait(false);
        }
        catch (XmlException e)
        {
            throw new CaptureException($"vSphere {method}: HTTP {(int)response.StatusCode}, not a SOAP answer: {e.Message}");
        }
        XElement? bodyElement = document.Root?.Element(s_soap + "Body");
        XElement? first = bodyElement?.Elements().FirstOrDefault();
        if (first is null)
        {
            throw new CaptureException($"vSphere {method}: HTTP {(int)response.StatusCode}, empty SOAP body");
        }
        if (first.Name == s_soap + "Fault")
        {
            string text = first.Element("faultstring")?.Value ?? "";
            string? detail = first.Element("detail")?.Elements().FirstOrDefault()?.Name.LocalName;
            if (detail is "ManagedObjectNotFoundFault" or "ManagedObjectNotFound" && method is "RetrievePropertiesEx")
            {
                throw new CaptureException($"vSphere object not found: {text}");
            }
            throw new CaptureException($"vSphere {method} failed: {(detail is null ? "" : detail + ": ")}{text}");
        }
        if (!response.IsSuccessStatusCode)
        {
            throw new CaptureException($"vSphere {method}: HTTP {(int)response.StatusCode} {response.ReasonPhrase}");
        }
        return first;
    }

    private static XElement This(MoRef reference) => new(s_vim + "_this", new XAttribute("type", reference.Type), reference.Value);

    private static XElement? Returnval(XElement response) => response.Element(s_vim + "returnval");

    private static MoRef? ReadMoRef(XElement? element)
        => element?.Attribute("type")?.Value is { Length: > 0 } type && element.Value.Length > 0 ? new MoRef(type, element.Value) : null;

    private static int Int(XElement? element)
        => int.TryParse(element?.Value, NumberStyles.Integer, CultureInfo.InvariantCulture, out int value) ? value : -1;

    private static string Bool(bool value) => value ? "true" : "false";
}
