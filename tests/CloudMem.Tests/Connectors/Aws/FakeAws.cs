using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using System.Web;
using CloudMem.Tests.Support;

namespace CloudMem.Tests.Connectors.Aws;

/// <summary>One call the fake received, in arrival order.</summary>
public sealed record FakeCall(string Service, string Operation, string Body, string RequestId, string? Authorization);

/// <summary>
/// A local stand-in for the AWS APIs that have no emulator: EC2 and Auto Scaling (Query/XML), STS (Query/XML) and
/// Systems Manager (JSON 1.1), on 127.0.0.1. The real SDK clients are pointed at it. It records every call in order;
/// SendCommand really runs the guest script with bash (resolving <c>{{ssm:NAME}}</c> from the parameters put before,
/// as Systems Manager does), so the guest's own curl uploads go to S3 (s3rver).
/// </summary>
public sealed partial class FakeAws : IDisposable
{
    private readonly HttpListener _listener = new();
    private readonly Task _loop;
    private readonly ConcurrentQueue<FakeCall> _calls = new();
    private readonly ConcurrentDictionary<string, string> _parameters = new();
    private readonly ConcurrentDictionary<string, FakeCommand> _commands = new();
    private int _requests;

    public FakeAws()
    {
        Port = Emulators.FreePort();
        _listener.Prefixes.Add($"http://127.0.0.1:{Port}/");
        _listener.Start();
        _loop = Task.Run(LoopAsync);
    }

    public int Port { get; }

    public string Url => $"http://127.0.0.1:{Port}/";

    // --- the world the fake describes ---
    public string InstanceId { get; set; } = "i-0123456789abcdef0";
    public string InstanceState { get; set; } = "running";
    public bool Windows { get; set; }
    public string InstanceType { get; set; } = "t3.micro";
    public long InstanceMemoryMiB { get; set; } = 256;
    public bool HibernationConfigured { get; set; }
    public string PingStatus { get; set; } = "Online";
    public bool RegisteredWithSsm { get; set; } = true;
    public string? AutoScalingGroup { get; set; }
    public string? ProfileAssociation { get; set; } = "iip-assoc-0aa";
    public List<(string Eni, string[] Groups)> Interfaces { get; } = [("eni-0aa", ["sg-0web"]), ("eni-0bb", ["sg-0db"])];
    /// <summary>When true, every ENI carries an IPv6 address (dual-stack subnet).</summary>
    public bool Ipv6 { get; set; }

    /// <summary>Groups whose all-traffic rules also cover ::/0.</summary>
    public HashSet<string> Ipv6OpenGroups { get; } = [];

    public Dictionary<string, (bool OpenIn, bool OpenOut, int Rules)> SecurityGroups { get; } = new()
    {
        ["sg-0open"] = (true, true, 1),
        ["sg-0closed"] = (false, false, 0),
    };
    public int StoppingPolls { get; set; } = 2;

    /// <summary>Keep commands InProgress forever (do not run them).</summary>
    public bool HangCommands { get; set; }

    /// <summary>Called when a command arrives, before the guest script runs (tests tamper with the world here).</summary>
    public Action? BeforeRun { get; set; }

    /// <summary>A command put before the guest's bash (e.g. strace and its options).</summary>
    public IReadOnlyList<string> GuestPrefix { get; set; } = [];

    /// <summary>Environment for the guest script (e.g. CLOUDMEM_GUEST_MEMINFO).</summary>
    public Dictionary<string, string> GuestEnvironment { get; } = [];

    public IReadOnlyList<FakeCall> Calls => [.. _calls];

    public IEnumerable<string> Operations => _calls.Select(c => $"{c.Service}:{c.Operation}");

    /// <summary>The raw SendCommand request bodies (parameters as the service stores them, references unresolved).</summary>
    public List<string> SendCommandBodies { get; } = [];

    /// <summary>Ticket URLs the fake resolved for the guest, and the URLs inside those tickets.</summary>
    public ConcurrentBag<string> GuestUrls { get; } = [];

    public ConcurrentBag<string> GuestOutputs { get; } = [];

    private sealed class FakeCommand
    {
        public required string Id { get; init; }
        public Process? Process { get; set; }
        public Task? Completion { get; set; }
        public string Stdout { get; set; } = "";
        public string Stderr { get; set; } = "";
        public int ExitCode { get; set; } = -1;
        public string Status { get; set; } = "Pending";
        public int Polls { get; set; }
    }

    private async Task LoopAsync()
    {
        while (_listener.IsListening)
        {
            HttpListenerContext context;
            try
            {
                context = await _listener.GetContextAsync();
            }
            catch (Exception e) when (e is HttpListenerException or ObjectDisposedException or InvalidOperationException)
            {
                return;
            }
            _ = Task.Run(() => HandleAsync(context));
        }
    }

    /// <summary>The EBS direct APIs (GET /snapshots/...), serving disk images per snapshot id.</summary>
    public FakeEbsDirect Ebs { get; } = new(AwsHarness.AccessKey, AwsHarness.SecretKey);

    private int _snapshots;

    /// <summary>Extra EBS volumes attached to the instance (device, volume id) besides the root /dev/xvda = vol-0root.</summary>
    public List<(string Device, string Volume)> ExtraVolumes { get; } = [];

    /// <summary>State DescribeSnapshots reports (after this many "pending" answers: completed).</summary>
    public int PendingSnapshotPolls { get; set; } = 1;

    private async Task HandleAsync(HttpListenerContext context)
    {
        string requestId = $"fake-req-{Interlocked.Increment(ref _requests):D6}";
        if (context.Request.HttpMethod == "GET" && context.Request.Url!.AbsolutePath.StartsWith("/snapshots/", StringComparison.Ordinal))
        {
            var (code, type, data, extra, operation) = Ebs.Handle(context.Request);
            _calls.Enqueue(new FakeCall("ebs", operation, context.Request.Url.PathAndQuery, requestId, context.Request.Headers["Authorization"] ?? ""));
            context.Response.StatusCode = code;
            context.Response.ContentType = type;
            context.Response.Headers["x-amzn-RequestId"] = requestId;
            foreach ((string name, string value) in extra)
            {
                context.Response.Headers[name] = value;
            }
            context.Response.ContentLength64 = data.Length;
            await context.Response.OutputStream.WriteAsync(data);
            context.Response.Close();
            return;
        }
        string body;
        using (var reader = new StreamReader(context.Request.InputStream, Encoding.UTF8))
        {
            body = await reader.ReadToEndAsync();
        }
        string? target = context.Request.Headers["X-Amz-Target"];
        string authorization = context.Request.Headers["Authorization"] ?? "";
        int status = 200;
        string contentType;
        string response;
        try
        {
            if (target is not null)
            {
                string operation = target[(target.IndexOf('.') + 1)..];
                _calls.Enqueue(new FakeCall("ssm", operation, body, requestId, authorization));
                contentType = "application/x-amz-json-1.1";
                (status, response) = Ssm(operation, JsonNode.Parse(body.Length == 0 ? "{}" : body)!.AsObject(), body);
            }
            else
            {
                var form = HttpUtility.ParseQueryString(body);
                string action = form["Action"] ?? "";
                string service = Service(authorization, action);
                _calls.Enqueue(new FakeCall(service, action, body, requestId, authorization));
                contentType = "text/xml";
                (status, response) = service switch
                {
                    "sts" => (200, Sts(action, requestId)),
                    "autoscaling" => (200, AutoScaling(action, form, requestId)),
                    "iam" => (200, Iam(action, form, requestId)),
                    _ => Ec2(action, form, requestId),
                };
            }
        }
        catch (Exception e)
        {
            status = 500;
            contentType = "text/plain";
            response = e.ToString();
        }
        if (response.Contains("@REQ@", StringComparison.Ordinal))
        {
            response = response.Replace("@REQ@", requestId, StringComparison.Ordinal);
        }
        context.Response.StatusCode = status;
        context.Response.ContentType = contentType;
        context.Response.Headers["x-amzn-RequestId"] = requestId;
        byte[] bytes = Encoding.UTF8.GetBytes(response);
        context.Response.ContentLength64 = bytes.Length;
        await context.Response.OutputStream.WriteAsync(bytes);
        context.Response.Close();
    }

    private static string Service(string authorization, string action)
    {
        Match m = CredentialScope().Match(authorization);
        if (m.Success)
        {
            return m.Groups[1].Value switch { "sts" => "sts", "autoscaling" => "autoscaling", "iam" => "iam", _ => "ec2" };
        }
        return action == "GetCallerIdentity" ? "sts" : "ec2";
    }

    [GeneratedRegex(@"Credential=[^/]+/\d{8}/[^/]+/([a-z0-9-]+)/aws4_request")]
    private static partial Regex CredentialScope();

    // ---------------- EC2 ----------------
    private const string Ec2Ns = "http://ec2.amazonaws.com/doc/2016-11-15/";

    private (int, string) Ec2(string action, System.Collections.Specialized.NameValueCollection form, string requestId)
    {
        string Wrap(string inner) => $"<?xml version=\"1.0\" encoding=\"UTF-8\"?><{action}Response xmlns=\"{Ec2Ns}\"><requestId>{requestId}</requestId>{inner}</{action}Response>";
        switch (action)
        {
            case "DescribeInstances":
                if (form["InstanceId.1"] != InstanceId)
                {
                    return (400, Ec2Error("InvalidInstanceID.NotFound", $"The instance ID '{form["InstanceId.1"]}' does not exist", requestId));
                }
                if (InstanceState == "stopping" && --StoppingPolls <= 0)
                {
                    InstanceState = "stopped";
                }
                return (200, Wrap($"<reservationSet><item><reservationId>r-0fake</reservationId><ownerId>123456789012</ownerId><groupSet/><instancesSet>{InstanceXml()}</instancesSet></item></reservationSet>"));
            case "DescribeInstanceTypes":
                return (200, Wrap($"<instanceTypeSet><item><instanceType>{InstanceType}</instanceType><memoryInfo><sizeInMiB>{InstanceMemoryMiB}</sizeInMiB></memoryInfo><hibernationSupported>true</hibernationSupported></item></instanceTypeSet>"));
            case "CreateTags":
            case "ModifyInstanceAttribute":
                return (200, Wrap("<return>true</return>"));
            case "ModifyNetworkInterfaceAttribute":
            {
                string eni = form["NetworkInterfaceId"]!;
                int index = Interfaces.FindIndex(i => i.Eni == eni);
                if (index < 0)
                {
                    return (400, Ec2Error("InvalidNetworkInterfaceID.NotFound", eni, requestId));
                }
                Interfaces[index] = (eni, [form["SecurityGroupId.1"]!]);
                return (200, Wrap("<return>true</return>"));
            }
            case "DescribeSecurityGroups":
            {
                var items = new StringBuilder();
                for (int i = 1; form[$"GroupId.{i}"] is string id; i++)
                {
                    if (SecurityGroups.TryGetValue(id, out var group))
                    {
                        string v6 = Ipv6OpenGroups.Contains(id) ? "<ipv6Ranges><item><cidrIpv6>::/0</cidrIpv6></item></ipv6Ranges>" : "<ipv6Ranges/>";
                        string open = $"<item><ipProtocol>-1</ipProtocol><groups/><ipRanges><item><cidrIp>0.0.0.0/0</cidrIp></item></ipRanges>{v6}<prefixListIds/></item>";
                        string closedRule = "<item><ipProtocol>tcp</ipProtocol><fromPort>22</fromPort><toPort>22</toPort><groups/><ipRanges><item><cidrIp>10.0.0.0/8</cidrIp></item></ipRanges></item>";
                        string inbound = group.OpenIn ? open : group.Rules > 0 ? closedRule : "";
                        string outbound = group.OpenOut ? open : group.Rules > 0 ? closedRule : "";
                        items.Append($"<item><ownerId>123456789012</ownerId><groupId>{id}</groupId><groupName>{id}</groupName><groupDescription>x</groupDescription><vpcId>vpc-0fake</vpcId><ipPermissions>{inbound}</ipPermissions><ipPermissionsEgress>{outbound}</ipPermissionsEgress></item>");
                    }
                }
                return (200, Wrap($"<securityGroupInfo>{items}</securityGroupInfo>"));
            }
            case "DescribeIamInstanceProfileAssociations":
                return (200, Wrap(ProfileAssociation is null
                    ? "<iamInstanceProfileAssociationSet/>"
                    : $"<iamInstanceProfileAssociationSet><item><associationId>{ProfileAssociation}</associationId><instanceId>{InstanceId}</instanceId><iamInstanceProfile><arn>arn:aws:iam::123456789012:instance-profile/web</arn><id>AIPAFAKE</id></iamInstanceProfile><state>associated</state></item></iamInstanceProfileAssociationSet>"));
            case "ReplaceIamInstanceProfileAssociation":
            case "DisassociateIamInstanceProfile":
                return (200, Wrap($"<iamInstanceProfileAssociation><associationId>{form["AssociationId"]}</associationId><instanceId>{InstanceId}</instanceId><state>{(action.StartsWith("Replace", StringComparison.Ordinal) ? "associating" : "disassociating")}</state></iamInstanceProfileAssociation>"));
            case "StopInstances":
                string previous = InstanceState;
                InstanceState = "stopping";
                return (200, Wrap($"<instancesSet><item><instanceId>{InstanceId}</instanceId><currentState><code>64</code><name>stopping</name></currentState><previousState><code>16</code><name>{previous}</name></previousState></item></instancesSet>"));
            case "CreateSnapshots":
                PendingSnapshotPolls = 1;
                return (200, Wrap("<snapshotSet><item><snapshotId>snap-0root</snapshotId><volumeId>vol-0root</volumeId><state>pending</state><volumeSize>8</volumeSize><startTime>2026-01-01T00:00:00.000Z</startTime><progress/><ownerId>123456789012</ownerId></item></snapshotSet>"));
            case "DescribeSnapshots":
                string snapshotState = PendingSnapshotPolls-- > 0 ? "pending" : "completed";
                var described = new StringBuilder();
                for (int i = 1; form[$"SnapshotId.{i}"] is { } id; i++)
                {
                    described.Append($"<item><snapshotId>{id}</snapshotId><volumeId>vol-0root</volumeId><status>{snapshotState}</status><volumeSize>8</volumeSize><startTime>2026-01-01T00:00:00.000Z</startTime><progress>{(snapshotState == "completed" ? "100%" : "40%")}</progress><ownerId>123456789012</ownerId></item>");
                }
                return (200, Wrap($"<snapshotSet>{described}</snapshotSet>"));
            case "CreateSnapshot":
                string newSnapshot = $"snap-0{form["VolumeId"]![4..]}{Interlocked.Increment(ref _snapshots)}";
                return (200, Wrap($"<snapshotId>{newSnapshot}</snapshotId><volumeId>{form["VolumeId"]}</volumeId><status>pending</status><startTime>{DateTime.UtcNow:yyyy-MM-ddTHH:mm:ss.fffZ}</startTime><progress/><ownerId>123456789012</ownerId><volumeSize>8</volumeSize><description>{WebUtility.HtmlEncode(form["Description"])}</description>"));
            case "ModifySnapshotAttribute":
                return (200, Wrap("<return>true</return>"));
            default:
                return (400, Ec2Error("InvalidAction", $"The action {action} is not valid for this web service.", requestId));
        }
    }

    private static string Ec2Error(string code, string message, string requestId)
        => $"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>{code}</Code><Message>{WebUtility.HtmlEncode(message)}</Message></Error></Errors><RequestID>{requestId}</RequestID></Response>";

    private string InstanceXml()
    {
        string stateCode = InstanceState switch { "running" => "16", "stopping" => "64", "stopped" => "80", _ => "0" };
        var tags = new StringBuilder("<item><key>Name</key><value>web</value></item>");
        if (AutoScalingGroup is not null)
        {
            tags.Append($"<item><key>aws:autoscaling:groupName</key><value>{AutoScalingGroup}</value></item>");
        }
        var enis = new StringBuilder();
        foreach ((string eni, string[] groups) in Interfaces)
        {
            enis.Append($"<item><networkInterfaceId>{eni}</networkInterfaceId><subnetId>subnet-0fake</subnetId><vpcId>vpc-0fake</vpcId><groupSet>{string.Concat(groups.Select(g => $"<item><groupId>{g}</groupId><groupName>{g}</groupName></item>"))}</groupSet>{(Ipv6 ? "<ipv6AddressesSet><item><ipv6Address>2001:db8::10</ipv6Address></item></ipv6AddressesSet>" : "")}</item>");
        }
        return $"<item><instanceId>{InstanceId}</instanceId><imageId>ami-0fake</imageId><instanceState><code>{stateCode}</code><name>{InstanceState}</name></instanceState>"
            + $"<instanceType>{InstanceType}</instanceType><placement><availabilityZone>us-east-1a</availabilityZone></placement>"
            + (Windows ? "<platform>windows</platform><platformDetails>Windows</platformDetails>" : "<platformDetails>Linux/UNIX</platformDetails>")
            + "<vpcId>vpc-0fake</vpcId><subnetId>subnet-0fake</subnetId><rootDeviceType>ebs</rootDeviceType><rootDeviceName>/dev/xvda</rootDeviceName>"
            + "<blockDeviceMapping><item><deviceName>/dev/xvda</deviceName><ebs><volumeId>vol-0root</volumeId><status>attached</status><deleteOnTermination>true</deleteOnTermination></ebs></item>"
            + string.Concat(ExtraVolumes.Select(v => $"<item><deviceName>{v.Device}</deviceName><ebs><volumeId>{v.Volume}</volumeId><status>attached</status><deleteOnTermination>false</deleteOnTermination></ebs></item>"))
            + "</blockDeviceMapping>"
            + $"<tagSet>{tags}</tagSet><networkInterfaceSet>{enis}</networkInterfaceSet>"
            + $"<hibernationOptions><configured>{(HibernationConfigured ? "true" : "false")}</configured></hibernationOptions></item>";
    }

    // ---------------- STS / Auto Scaling ----------------
    private static string Sts(string action, string requestId)
        => action != "GetCallerIdentity"
            ? throw new InvalidOperationException($"sts {action}")
            : $"<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><GetCallerIdentityResult><Arn>arn:aws:iam::123456789012:user/responder</Arn><UserId>AIDAFAKEUSERID</UserId><Account>123456789012</Account></GetCallerIdentityResult><ResponseMetadata><RequestId>{requestId}</RequestId></ResponseMetadata></GetCallerIdentityResponse>";

    /// <summary>Inline role policies put through IAM: (role, policy name) -> document.</summary>
    public ConcurrentDictionary<(string Role, string Policy), string> RolePolicies { get; } = new();

    private string Iam(string action, System.Collections.Specialized.NameValueCollection form, string requestId)
    {
        const string ns = "https://iam.amazonaws.com/doc/2010-05-08/";
        string meta = $"<ResponseMetadata><RequestId>{requestId}</RequestId></ResponseMetadata>";
        switch (action)
        {
            case "GetInstanceProfile":
                string name = form["InstanceProfileName"]!;
                return $"<GetInstanceProfileResponse xmlns=\"{ns}\"><GetInstanceProfileResult><InstanceProfile><InstanceProfileName>{name}</InstanceProfileName>"
                    + $"<Roles><member><RoleName>{name}-role</RoleName><Arn>arn:aws:iam::123456789012:role/{name}-role</Arn></member></Roles></InstanceProfile></GetInstanceProfileResult>{meta}</GetInstanceProfileResponse>";
            case "PutRolePolicy":
                RolePolicies[(form["RoleName"]!, form["PolicyName"]!)] = form["PolicyDocument"]!;
                return $"<PutRolePolicyResponse xmlns=\"{ns}\">{meta}</PutRolePolicyResponse>";
            default:
                throw new InvalidOperationException($"iam {action}");
        }
    }

    private string AutoScaling(string action, System.Collections.Specialized.NameValueCollection form, string requestId)
    {
        const string ns = "http://autoscaling.amazonaws.com/doc/2011-01-01/";
        string meta = $"<ResponseMetadata><RequestId>{requestId}</RequestId></ResponseMetadata>";
        return action switch
        {
            "DescribeAutoScalingInstances" => $"<DescribeAutoScalingInstancesResponse xmlns=\"{ns}\"><DescribeAutoScalingInstancesResult><AutoScalingInstances>"
                + (AutoScalingGroup is null ? "" : $"<member><InstanceId>{form["InstanceIds.member.1"]}</InstanceId><AutoScalingGroupName>{AutoScalingGroup}</AutoScalingGroupName><LifecycleState>InService</LifecycleState></member>")
                + $"</AutoScalingInstances></DescribeAutoScalingInstancesResult>{meta}</DescribeAutoScalingInstancesResponse>",
            "EnterStandby" => $"<EnterStandbyResponse xmlns=\"{ns}\"><EnterStandbyResult><Activities><member><ActivityId>act-1</ActivityId><StatusCode>InProgress</StatusCode></member></Activities></EnterStandbyResult>{meta}</EnterStandbyResponse>",
            _ => throw new InvalidOperationException($"autoscaling {action}"),
        };
    }

    // ---------------- SSM ----------------
    private (int, string) Ssm(string operation, JsonObject request, string body)
    {
        switch (operation)
        {
            case "DescribeInstanceInformation":
                return (200, RegisteredWithSsm
                    ? JsonSerializer.Serialize(new { InstanceInformationList = new[] { new { InstanceId, PingStatus, PlatformType = Windows ? "Windows" : "Linux", PlatformName = Windows ? "Microsoft Windows Server 2022" : "Amazon Linux", PlatformVersion = "2023", AgentVersion = "3.3.987.0" } } })
                    : "{\"InstanceInformationList\":[]}");
            case "PutParameter":
                _parameters[(string)request["Name"]!] = (string)request["Value"]!;
                return (200, "{\"Version\":1,\"Tier\":\"Standard\"}");
            case "DeleteParameter":
                return _parameters.TryRemove((string)request["Name"]!, out _) ? (200, "{}") : (400, "{\"__type\":\"ParameterNotFound\",\"message\":\"not found\"}");
            case "SendCommand":
                lock (SendCommandBodies)
                {
                    SendCommandBodies.Add(body);
                }
                return (200, SendCommand(request));
            case "GetCommandInvocation":
            {
                string id = (string)request["CommandId"]!;
                if (!_commands.TryGetValue(id, out FakeCommand? command))
                {
                    return (400, "{\"__type\":\"InvocationDoesNotExist\",\"message\":\"no such invocation\"}");
                }
                command.Polls++;
                return (200, JsonSerializer.Serialize(new
                {
                    CommandId = id,
                    InstanceId,
                    DocumentName = "AWS-RunShellScript",
                    Status = command.Status,
                    StatusDetails = command.Status,
                    ResponseCode = command.ExitCode,
                    StandardOutputContent = Truncate(command.Stdout, 24000),
                    StandardErrorContent = Truncate(command.Stderr, 8000),
                }));
            }
            case "CancelCommand":
            {
                if (_commands.TryGetValue((string)request["CommandId"]!, out FakeCommand? command))
                {
                    command.Status = "Cancelled";
                    try
                    {
                        command.Process?.Kill(entireProcessTree: true);
                    }
                    catch (InvalidOperationException)
                    {
                    }
                }
                return (200, "{}");
            }
            default:
                return (400, $"{{\"__type\":\"InvalidAction\",\"message\":\"{operation}\"}}");
        }
    }

    private static string Truncate(string text, int max) => text.Length <= max ? text : text[..max];

    private string SendCommand(JsonObject request)
    {
        string id = Guid.NewGuid().ToString();
        var command = new FakeCommand { Id = id };
        _commands[id] = command;
        var lines = request["Parameters"]!["commands"]!.AsArray().Select(n => (string)n!);
        string script = string.Join("\n", lines);
        // Systems Manager resolves {{ssm:NAME}} references when it delivers the command.
        script = SsmReference().Replace(script, m => _parameters.TryGetValue(m.Groups[1].Value, out string? value) ? RecordTicket(value) : m.Value);
        BeforeRun?.Invoke();
        if (HangCommands)
        {
            command.Status = "InProgress";
        }
        else
        {
            string path = Path.Combine(Path.GetTempPath(), $"cloudmem-fake-ssm-{id}.sh");
            File.WriteAllText(path, script);
            var start = new ProcessStartInfo(GuestPrefix.Count > 0 ? GuestPrefix[0] : "bash", [.. GuestPrefix.Skip(1), .. GuestPrefix.Count > 0 ? new[] { "bash" } : [], path]) { RedirectStandardOutput = true, RedirectStandardError = true };
            foreach ((string key, string value) in GuestEnvironment)
            {
                start.Environment[key] = value;
            }
            command.Status = "InProgress";
            command.Process = Process.Start(start)!;
            command.Completion = Task.Run(async () =>
            {
                Task<string> stdout = command.Process.StandardOutput.ReadToEndAsync();
                Task<string> stderr = command.Process.StandardError.ReadToEndAsync();
                await command.Process.WaitForExitAsync();
                command.Stdout = await stdout;
                command.Stderr = await stderr;
                GuestOutputs.Add(command.Stdout + command.Stderr);
                command.ExitCode = command.Process.ExitCode;
                if (command.Status != "Cancelled")
                {
                    command.Status = command.ExitCode == 0 ? "Success" : "Failed";
                }
                File.Delete(path);
            });
        }
        return JsonSerializer.Serialize(new { Command = new { CommandId = id, DocumentName = (string?)request["DocumentName"], Status = "Pending" } });
    }

    private string RecordTicket(string ticketUrl)
    {
        GuestUrls.Add(ticketUrl);
        try
        {
            using var http = new HttpClient();
            foreach (string url in http.GetStringAsync(ticketUrl).GetAwaiter().GetResult().Split('\n', StringSplitOptions.RemoveEmptyEntries))
            {
                GuestUrls.Add(url);
            }
        }
        catch (HttpRequestException)
        {
        }
        return ticketUrl;
    }

    [GeneratedRegex(@"\{\{ssm:([A-Za-z0-9_./-]+)\}\}")]
    private static partial Regex SsmReference();

    public void Dispose()
    {
        HttpListenerLoop.Shut(_listener);
        foreach (FakeCommand command in _commands.Values)
        {
            try
            {
                if (command.Process is { HasExited: false })
                {
                    command.Process.Kill(entireProcessTree: true);
                }
            }
            catch (InvalidOperationException)
            {
            }
        }
        try
        {
            _loop.Wait(TimeSpan.FromSeconds(5));
        }
        catch (AggregateException)
        {
        }
    }
}
