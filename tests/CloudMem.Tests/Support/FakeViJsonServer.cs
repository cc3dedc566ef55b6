using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace CloudMem.Tests.Support;

/// <summary>
/// A local stand-in for vCenter 8's VI/JSON API (vcsim 0.24 has none) that speaks exactly the calls the connector makes
/// (service content, Login/Logout with the vmware-api-session-id header, FindByInventoryPath, VM name/runtime/parent/
/// snapshot/layoutEx, Datacenter name, CreateSnapshot_Task/RemoveSnapshot_Task, Task info) and the datastore /folder
/// service with Range. It checks the session on every call and the JSON bodies it gets. One VM: DC1/vm/web01 = vm-42.
/// </summary>
public sealed class FakeViJsonServer : IDisposable
{
    public const string Release = "8.0.1.0";
    private readonly HttpListener _listener = new();
    private readonly string _user;
    private readonly string _password;
    private readonly string _vmsn;
    private readonly string _vmem;
    private readonly Lock _lock = new();
    private readonly Dictionary<string, (string State, string? Result)> _tasks = [];
    private readonly Dictionary<string, string> _snapshots = []; // id -> name
    private readonly List<string> _requests = [];
    private string? _token;
    private int _next = 100;

    /// <summary>Starts on a free port; the snapshot's files are <paramref name="vmsn"/> and <paramref name="vmem"/>.</summary>
    public FakeViJsonServer(string user, string password, string vmsn, string vmem)
    {
        _user = user;
        _password = password;
        _vmsn = vmsn;
        _vmem = vmem;
        int port = Emulators.FreePort();
        _listener.Prefixes.Add($"http://127.0.0.1:{port}/");
        _listener.Start();
        Url = new Uri($"http://127.0.0.1:{port}/");
        _ = Task.Run(LoopAsync);
    }

    /// <summary>Base URL.</summary>
    public Uri Url { get; }

    /// <summary>CreateSnapshot_Task makes the snapshot but its task never leaves "running".</summary>
    public bool CreateNeverFinishes { get; set; }

    /// <summary>Requests seen ("METHOD path"), in order.</summary>
    public IReadOnlyList<string> Requests
    {
        get
        {
            lock (_lock)
            {
                return [.. _requests];
            }
        }
    }

    /// <summary>Snapshots that exist now (id -> name).</summary>
    public IReadOnlyDictionary<string, string> Snapshots
    {
        get
        {
            lock (_lock)
            {
                return new Dictionary<string, string>(_snapshots);
            }
        }
    }

    /// <summary>Every request body seen (to check no secret goes anywhere else than Login).</summary>
    public List<string> Bodies { get; } = [];

    private async Task LoopAsync()
    {
        while (_listener.IsListening)
        {
            HttpListenerContext context;
            try
            {
                context = await _listener.GetContextAsync();
            }
            catch (Exception)
            {
                return;
            }
            try
            {
                await HandleAsync(context);
            }
            catch (Exception e)
            {
                try
                {
                    await Reply(context.Response, 500, new JsonObject { ["_typeName"] = "SystemError", ["message"] = e.Message });
                }
                catch (Exception)
                {
                }
            }
        }
    }

    private async Task HandleAsync(HttpListenerContext context)
    {
        HttpListenerRequest request = context.Request;
        HttpListenerResponse response = context.Response;
        string path = request.Url!.AbsolutePath;
        string body = await new StreamReader(request.InputStream, Encoding.UTF8).ReadToEndAsync();
        lock (_lock)
        {
            _requests.Add($"{request.HttpMethod} {path}");
            if (body.Length > 0)
            {
                Bodies.Add(body);
            }
        }
        string prefix = $"/sdk/vim25/{Release}/";
        if (path == prefix + "ServiceInstance/ServiceInstance/content")
        {
            await Reply(response, 200, new JsonObject
            {
                ["_typeName"] = "ServiceContent",
                ["about"] = new JsonObject { ["fullName"] = "Fake vCenter Server 8.0.2", ["apiType"] = "VirtualCenter", ["apiVersion"] = "8.0.2.0" },
                ["rootFolder"] = Ref("Folder", "group-d1"),
                ["sessionManager"] = Ref("SessionManager", "SessionManager"),
                ["searchIndex"] = Ref("SearchIndex", "SearchIndex"),
            });
            return;
        }
        if (path == prefix + "SessionManager/SessionManager/Login")
        {
            JsonNode login = JsonNode.Parse(body)!;
            if ((string?)login["userName"] != _user || (string?)login["password"] != _password)
            {
                await Reply(response, 500, new JsonObject { ["_typeName"] = "InvalidLogin", ["message"] = "Cannot complete login due to an incorrect user name or password." });
                return;
            }
            _token = Guid.NewGuid().ToString("N");
            response.Headers["vmware-api-session-id"] = _token;
            await Reply(response, 200, new JsonObject { ["_typeName"] = "UserSession", ["userName"] = "VSPHERE.LOCAL\\" + _user, ["key"] = "session-key" });
            return;
        }
        bool authenticated = _token is not null && (request.Headers["vmware-api-session-id"] == _token || (request.Headers["Cookie"]?.Contains(_token, StringComparison.Ordinal) ?? false));
        if (!authenticated)
        {
            await Reply(response, 401, new JsonObject { ["_typeName"] = "NotAuthenticated" });
            return;
        }
        if (path.StartsWith("/folder/", StringComparison.Ordinal))
        {
            await ServeFolderAsync(request, response, path["/folder/".Length..]);
            return;
        }
        if (!path.StartsWith(prefix, StringComparison.Ordinal))
        {
            await Reply(response, 404, new JsonObject { ["_typeName"] = "NotFound" });
            return;
        }
        string[] parts = path[prefix.Length..].Split('/');
        string key = $"{request.HttpMethod} {parts[0]}/{parts[1]}/{parts[2]}";
        JsonNode? result = key switch
        {
            "POST SessionManager/SessionManager/Logout" => Logout(),
            "POST SearchIndex/SearchIndex/FindByInventoryPath" => (string?)JsonNode.Parse(body)!["inventoryPath"] == "DC1/vm/web01" ? Ref("VirtualMachine", "vm-42") : null,
            "GET Folder/group-d1/childEntity" => new JsonArray(Ref("Datacenter", "datacenter-1")),
            "GET Datacenter/datacenter-1/name" => JsonValue.Create("DC1"),
            "GET VirtualMachine/vm-42/name" => JsonValue.Create("web01"),
            "GET VirtualMachine/vm-42/runtime" => new JsonObject { ["_typeName"] = "VirtualMachineRuntimeInfo", ["powerState"] = "poweredOn" },
            "GET VirtualMachine/vm-42/parent" => Ref("Folder", "group-v3"),
            "GET Folder/group-v3/parent" => Ref("Datacenter", "datacenter-1"),
            "GET VirtualMachine/vm-42/snapshot" => SnapshotInfo(),
            "GET VirtualMachine/vm-42/layoutEx" => LayoutEx(),
            "POST VirtualMachine/vm-42/CreateSnapshot_Task" => CreateSnapshot(JsonNode.Parse(body)!),
            _ when parts[0] == "VirtualMachineSnapshot" && parts[2] == "RemoveSnapshot_Task" && request.HttpMethod == "POST" => RemoveSnapshot(parts[1]),
            _ when parts[0] == "Task" && parts[2] == "info" => TaskInfo(parts[1]),
            _ => throw new InvalidOperationException($"fake VI/JSON server: unexpected {key}"),
        };
        if (result is null)
        {
            response.StatusCode = 204;
            response.Close();
            return;
        }
        await Reply(response, 200, result);
    }

    private JsonNode? Logout()
    {
        _token = null;
        return null;
    }

    private JsonNode CreateSnapshot(JsonNode parameters)
    {
        if ((bool?)parameters["memory"] != true || (bool?)parameters["quiesce"] != false)
        {
            throw new InvalidOperationException("CreateSnapshot_Task without memory=true quiesce=false");
        }
        lock (_lock)
        {
            string snapshot = $"snapshot-{_next++}";
            _snapshots[snapshot] = (string)parameters["name"]!;
            string task = $"task-{_next++}";
            _tasks[task] = CreateNeverFinishes ? ("running", null) : ("success", snapshot);
            return Ref("Task", task);
        }
    }

    private JsonNode RemoveSnapshot(string snapshot)
    {
        lock (_lock)
        {
            string task = $"task-{_next++}";
            _tasks[task] = _snapshots.Remove(snapshot) ? ("success", null) : ("error", null);
            return Ref("Task", task);
        }
    }

    private JsonNode TaskInfo(string task)
    {
        lock (_lock)
        {
            (string state, string? result) = _tasks[task];
            var info = new JsonObject { ["_typeName"] = "TaskInfo", ["key"] = task, ["state"] = state, ["progress"] = state == "running" ? 42 : null };
            if (result is not null)
            {
                info["result"] = Ref("VirtualMachineSnapshot", result);
            }
            if (state == "error")
            {
                info["error"] = new JsonObject { ["_typeName"] = "LocalizedMethodFault", ["localizedMessage"] = "The object has already been deleted" };
            }
            return info;
        }
    }

    private JsonNode? SnapshotInfo()
    {
        lock (_lock)
        {
            if (_snapshots.Count == 0)
            {
                return null;
            }
            var list = new JsonArray();
            foreach ((string id, string name) in _snapshots)
            {
                list.Add(new JsonObject { ["_typeName"] = "VirtualMachineSnapshotTree", ["snapshot"] = Ref("VirtualMachineSnapshot", id), ["name"] = name, ["childSnapshotList"] = new JsonArray() });
            }
            return new JsonObject { ["_typeName"] = "VirtualMachineSnapshotInfo", ["rootSnapshotList"] = list };
        }
    }

    private JsonNode LayoutEx()
    {
        lock (_lock)
        {
            var files = new JsonArray(
                new JsonObject { ["key"] = 0, ["name"] = "[ds1] web01/web01.vmx", ["type"] = "config", ["size"] = 3000 });
            var snapshots = new JsonArray();
            int key = 10;
            foreach (string id in _snapshots.Keys)
            {
                files.Add(new JsonObject { ["key"] = key, ["name"] = "[ds1] web01/web01-Snapshot1.vmsn", ["type"] = "snapshotData", ["size"] = new FileInfo(_vmsn).Length });
                files.Add(new JsonObject { ["key"] = key + 1, ["name"] = "[ds1] web01/web01-Snapshot1.vmem", ["type"] = "snapshotMemory", ["size"] = new FileInfo(_vmem).Length });
                snapshots.Add(new JsonObject { ["key"] = Ref("VirtualMachineSnapshot", id), ["dataKey"] = key, ["memoryKey"] = key + 1 });
                key += 2;
            }
            return new JsonObject { ["_typeName"] = "VirtualMachineFileLayoutEx", ["file"] = files, ["snapshot"] = snapshots };
        }
    }

    private async Task ServeFolderAsync(HttpListenerRequest request, HttpListenerResponse response, string path)
    {
        if (request.QueryString["dcPath"] != "DC1" || request.QueryString["dsName"] != "ds1")
        {
            response.StatusCode = 404;
            response.Close();
            return;
        }
        string? file = Uri.UnescapeDataString(path) switch
        {
            "web01/web01-Snapshot1.vmsn" => _vmsn,
            "web01/web01-Snapshot1.vmem" => _vmem,
            _ => null,
        };
        if (file is null)
        {
            response.StatusCode = 404;
            response.Close();
            return;
        }
        long length = new FileInfo(file).Length;
        long from = 0;
        if (request.Headers["Range"] is { } range && range.StartsWith("bytes=", StringComparison.Ordinal) && range.EndsWith('-'))
        {
            from = long.Parse(range[6..^1], System.Globalization.CultureInfo.InvariantCulture);
            response.StatusCode = 206;
            response.Headers["Content-Range"] = $"bytes {from}-{length - 1}/{length}";
        }
        response.ContentLength64 = length - from;
        await using FileStream input = File.OpenRead(file);
        input.Position = from;
        await input.CopyToAsync(response.OutputStream);
        response.Close();
    }

    private static JsonObject Ref(string type, string value) => new() { ["_typeName"] = "ManagedObjectReference", ["type"] = type, ["value"] = value };

    private static async Task Reply(HttpListenerResponse response, int status, JsonNode body)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(body.ToJsonString());
        response.StatusCode = status;
        response.ContentType = "application/json";
        response.ContentLength64 = bytes.Length;
        await response.OutputStream.WriteAsync(bytes);
        response.Close();
    }

    /// <inheritdoc />
    public void Dispose()
    {
        HttpListenerLoop.Shut(_listener);
    }
}
