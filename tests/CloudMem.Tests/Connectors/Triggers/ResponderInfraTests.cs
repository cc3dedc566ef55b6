using System.Text.RegularExpressions;
using CloudMem.Connectors.Aws;
using CloudMem.Tests.Support;
using YamlDotNet.RepresentationModel;

namespace CloudMem.Tests.Connectors.Triggers;

/// <summary>
/// infra/ without a cloud: the CloudFormation role grants exactly the actions of the AWS capture path
/// (<see cref="AwsCapturePermissions"/>, itself checked against the operations named in the connector's code), with
/// no wildcard action and no "*" resource for anything that writes; the Azure files are consistent.
/// </summary>
public sealed partial class ResponderInfraTests
{
    private static readonly string[] s_connectorServices = ["ec2", "ssm", "s3", "sts", "autoscaling", "dynamodb", "kms"];

    private static YamlMappingNode Template()
    {
        var yaml = new YamlStream();
        using (var reader = new StreamReader(Path.Combine(Fixture.RepoRoot, "infra", "aws", "cloudmem-responder.yaml")))
        {
            yaml.Load(reader);
        }
        return (YamlMappingNode)yaml.Documents[0].RootNode;
    }

    private static IEnumerable<string> Scalars(YamlNode node) => node switch
    {
        YamlScalarNode scalar => [scalar.Value ?? ""],
        YamlSequenceNode sequence => sequence.Children.SelectMany(Scalars),
        YamlMappingNode mapping => mapping.Children.Values.SelectMany(Scalars),
        _ => [],
    };

    private static List<(string[] Actions, string[] Resources, YamlMappingNode Statement)> RoleStatements()
    {
        var role = (YamlMappingNode)Template()["Resources"]["ResponderRole"]["Properties"];
        var statements = new List<(string[], string[], YamlMappingNode)>();
        foreach (YamlNode policy in ((YamlSequenceNode)role["Policies"]).Children)
        {
            foreach (YamlMappingNode statement in ((YamlSequenceNode)policy["PolicyDocument"]["Statement"]).Children.Cast<YamlMappingNode>())
            {
                Assert.Equal("Allow", ((YamlScalarNode)statement["Effect"]).Value);
                Assert.False(statement.Children.ContainsKey("NotAction") || statement.Children.ContainsKey("NotResource"));
                statements.Add(([.. Scalars(statement["Action"])], [.. Scalars(statement["Resource"])], statement));
            }
        }
        return statements;
    }

    [Fact]
    public void Role_grants_exactly_the_capture_actions()
    {
        var statements = RoleStatements();
        string[] granted = [.. statements.SelectMany(s => s.Actions).Where(a => s_connectorServices.Contains(a.Split(':')[0])).Distinct().Order(StringComparer.Ordinal)];
        Assert.Equal(AwsCapturePermissions.Actions(), granted);
        // Nothing else but the function's own log stream.
        Assert.All(statements.SelectMany(s => s.Actions), a => Assert.True(s_connectorServices.Contains(a.Split(':')[0]) || a is "logs:CreateLogStream" or "logs:PutLogEvents", a));
        Assert.All(statements.SelectMany(s => s.Actions), a => Assert.DoesNotContain('*', a));
    }

    [Fact]
    public void Star_resources_only_for_actions_without_resource_level_permissions()
    {
        IReadOnlyList<string> anyScope = AwsCapturePermissions.Actions(AwsResourceScope.Any);
        foreach ((string[] actions, string[] resources, _) in RoleStatements())
        {
            if (resources.Contains("*"))
            {
                Assert.All(actions, a => Assert.Contains(a, anyScope));
            }
        }
        foreach (string s3Write in new[] { "s3:PutObject", "s3:AbortMultipartUpload", "s3:GetObject" })
        {
            (_, string[] resources, _) = Assert.Single(RoleStatements(), s => s.Actions.Contains(s3Write));
            string resource = Assert.Single(resources);
            Assert.Equal("${EvidenceBucket.Arn}/${EvidencePrefix}/*", resource);
        }
        // DeleteObject: the ticket objects only; the IAM pattern admits a ticket key and no evidence, manifest or tool key.
        (string[] deleteActions, string[] deleteResources, _) = Assert.Single(RoleStatements(), s => s.Actions.Contains("s3:DeleteObject"));
        Assert.Equal(["s3:DeleteObject"], deleteActions);
        string ticketArn = Assert.Single(deleteResources);
        Assert.Equal("${EvidenceBucket.Arn}/${EvidencePrefix}/*/.ticket-*", ticketArn);
        var iam = new Regex("^" + Regex.Escape(ticketArn.Replace("${EvidenceBucket.Arn}/${EvidencePrefix}/", "cloudmem/", StringComparison.Ordinal)).Replace("\\*", ".*", StringComparison.Ordinal) + "$");
        Assert.Matches(iam, "cloudmem/IR-42/i-0abc/20261206T170000Z/.ticket-0123456789abcdef01234567");
        foreach (string kept in new[] { "cloudmem/IR-42/i-0abc/20261206T170000Z/memory.lime", "cloudmem/IR-42/i-0abc/20261206T170000Z/memory.lime.custody.json", "cloudmem/tools/0a1b" })
        {
            Assert.DoesNotMatch(iam, kept);
        }
        // SendCommand: the stack's two documents (no AWS-owned one anywhere), and instances only with the capture tag.
        var send = RoleStatements().Where(s => s.Actions.Contains("ssm:SendCommand")).ToList();
        Assert.Equal(2, send.Count);
        Assert.All(send, s => Assert.Equal(["ssm:SendCommand"], s.Actions));
        string[] documents = Assert.Single(send, s => s.Resources.All(r => r.Contains(":document/", StringComparison.Ordinal))).Resources;
        Assert.Equal(["${CaptureDocumentLinux}", "${CaptureDocumentWindows}"], documents.Select(r => r[r.IndexOf("${C", StringComparison.Ordinal)..]).Order(StringComparer.Ordinal));
        Assert.DoesNotContain("document/AWS-", File.ReadAllText(Path.Combine(Fixture.RepoRoot, "infra", "aws", "cloudmem-responder.yaml")));
        (_, string[] instances, YamlMappingNode tagged) = Assert.Single(send, s => s.Resources.Any(r => r.Contains(":instance/", StringComparison.Ordinal)));
        Assert.EndsWith(":instance/*", Assert.Single(instances), StringComparison.Ordinal);
        var condition = (YamlMappingNode)tagged["Condition"]["StringEquals"];
        Assert.Equal("aws:ResourceTag/cloudmem-capture", ((YamlScalarNode)Assert.Single(condition.Children).Key).Value);
        foreach (string keyAction in AwsCapturePermissions.Actions(AwsResourceScope.EvidenceKey))
        {
            (_, string[] resources, _) = Assert.Single(RoleStatements(), s => s.Actions.Contains(keyAction));
            Assert.Equal("EvidenceKey.Arn", Assert.Single(resources));
        }
        foreach (string tableAction in AwsCapturePermissions.Actions(AwsResourceScope.LedgerTable))
        {
            (_, string[] resources, _) = Assert.Single(RoleStatements(), s => s.Actions.Contains(tableAction));
            Assert.Equal("DedupeTable.Arn", Assert.Single(resources));
        }
        foreach (string parameterAction in new[] { "ssm:PutParameter", "ssm:GetParameters", "ssm:DeleteParameter" })
        {
            (_, string[] resources, _) = Assert.Single(RoleStatements(), s => s.Actions.Contains(parameterAction));
            Assert.EndsWith(":parameter/cloudmem/ticket/*", Assert.Single(resources), StringComparison.Ordinal);
        }
    }

    [GeneratedRegex(@"calls\.(?:Run|TryRun|Note)\(\s*""(?<service>[a-z0-9]+)"",\s*""(?<operation>[A-Za-z0-9]+)""")]
    private static partial Regex CallPattern();

    [Fact]
    public void Every_operation_in_the_aws_connector_code_is_classified()
    {
        var found = new HashSet<string>(StringComparer.Ordinal);
        foreach (string file in Directory.GetFiles(Path.Combine(Fixture.RepoRoot, "src", "Connectors", "Aws"), "*.cs"))
        {
            foreach (Match match in CallPattern().Matches(File.ReadAllText(file)))
            {
                found.Add($"{match.Groups["service"].Value}:{match.Groups["operation"].Value}");
            }
        }
        Assert.True(found.Count >= 25, $"only {found.Count} operations found: the pattern no longer matches the connector's code");
        foreach (string operation in found)
        {
            Assert.True(AwsCapturePermissions.ForOperation(operation) is not null || AwsCapturePermissions.NotGranted.ContainsKey(operation),
                $"{operation} is called by the AWS connector but is neither granted (AwsCapturePermissions.Capture) nor listed as not granted");
        }
        // And the table names no operation the code no longer calls (presigned and resolved ones are not SDK calls).
        foreach (AwsPermission permission in AwsCapturePermissions.Capture.Where(p => !p.Operation.Contains(' ', StringComparison.Ordinal)))
        {
            Assert.Contains(permission.Operation, found);
        }
    }

    [Fact]
    public void Rule_matches_guardduty_instance_findings_and_targets_the_function()
    {
        var rule = (YamlMappingNode)Template()["Resources"]["FindingRule"]["Properties"];
        var pattern = (YamlMappingNode)rule["EventPattern"];
        Assert.Equal(["aws.guardduty"], Scalars(pattern["source"]));
        Assert.Equal(["GuardDuty Finding"], Scalars(pattern["detail-type"]));
        Assert.Equal(["Instance"], Scalars(pattern["detail"]["resource"]["resourceType"]));
        // A literal number chosen by conditions (a parameter reference would be a string in the pattern).
        string[] severity = [.. Scalars(pattern["detail"]["severity"])];
        Assert.Equal(">=", severity[0]);
        Assert.Equal(["9", "8", "7", "4", "1"], severity.Where(v => int.TryParse(v, out _)));
        Assert.DoesNotContain(pattern["detail"]["severity"].AllNodes, n => !n.Tag.IsEmpty && n.Tag.Value == "!Ref");
        var function = (YamlMappingNode)Template()["Resources"]["ResponderFunction"]["Properties"];
        Assert.Equal("provided.al2023", ((YamlScalarNode)function["Runtime"]).Value);
        Assert.Equal(["x86_64"], Scalars(function["Architectures"]));
        var bucket = (YamlMappingNode)Template()["Resources"]["EvidenceBucket"]["Properties"];
        Assert.Equal("Enabled", ((YamlScalarNode)bucket["VersioningConfiguration"]["Status"]).Value);
        Assert.All(Scalars(bucket["PublicAccessBlockConfiguration"]), v => Assert.Equal("true", v));
        // Object Lock in COMPLIANCE mode by default, SSE-KMS with the stack's key by default.
        var parameters = (YamlMappingNode)Template()["Parameters"];
        Assert.Equal("true", ((YamlScalarNode)parameters["ObjectLock"]["Default"]).Value);
        Assert.Contains("COMPLIANCE", Scalars(bucket["ObjectLockConfiguration"]));
        Assert.DoesNotContain("GOVERNANCE", Scalars(bucket["ObjectLockConfiguration"]));
        var sse = (YamlMappingNode)((YamlSequenceNode)bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]).Children[0]["ServerSideEncryptionByDefault"];
        Assert.Equal("aws:kms", ((YamlScalarNode)sse["SSEAlgorithm"]).Value);
        Assert.Equal("EvidenceKey.Arn", Assert.Single(Scalars(sse["KMSMasterKeyID"])));
        // The function runs the stack's documents at the pinned version.
        var variables = (YamlMappingNode)function["Environment"]["Variables"];
        Assert.Equal("CaptureDocumentLinux", Assert.Single(Scalars(variables["CLOUDMEM_SSM_DOCUMENT_LINUX"])));
        Assert.Equal("SsmDocumentVersion", Assert.Single(Scalars(variables["CLOUDMEM_SSM_DOCUMENT_VERSION"])));
        // Every variable the function reads is one `cloudmem lambda` knows.
        string responder = File.ReadAllText(Path.Combine(Fixture.RepoRoot, "src", "Cli", "Commands", "RespondCommands.cs"));
        foreach (string name in ((YamlMappingNode)function["Environment"]["Variables"]).Children.Keys.Select(k => ((YamlScalarNode)k).Value!).Where(n => n.StartsWith("CLOUDMEM_", StringComparison.Ordinal)))
        {
            Assert.Contains($"\"{name}\"", responder);
        }
    }

    [Fact]
    public void Azure_function_package_runs_the_custom_handler_with_scoped_roles()
    {
        string dir = Path.Combine(Fixture.RepoRoot, "infra", "azure");
        using var host = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "function", "host.json")));
        System.Text.Json.JsonElement handler = host.RootElement.GetProperty("customHandler").GetProperty("description");
        Assert.Equal("cloudmem", handler.GetProperty("defaultExecutablePath").GetString());
        Assert.Equal(["serve-function"], handler.GetProperty("arguments").EnumerateArray().Select(a => a.GetString()));
        using var grid = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "function", "respond", "function.json")));
        Assert.Equal("eventGridTrigger", grid.RootElement.GetProperty("bindings")[0].GetProperty("type").GetString());
        using var http = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "function", "respond-http", "function.json")));
        // The handler answers Outputs.res: the HTTP output binding must be called res.
        Assert.Contains(http.RootElement.GetProperty("bindings").EnumerateArray(), b => b.GetProperty("type").GetString() == "http" && b.GetProperty("name").GetString() == "res");

        string bicep = File.ReadAllText(Path.Combine(dir, "cloudmem-responder.bicep"));
        // Custom roles only (their actions: AzurePermissionsTests), the evidence role on the evidence account.
        // The third, the hibernation role, is defined for the operator to assign and assigned to no one here.
        Assert.Equal(3, Regex.Matches(bicep, "type: 'CustomRole'").Count);
        Assert.Contains("resource hibernationRole 'Microsoft.Authorization/roleDefinitions@", bicep);
        Assert.DoesNotContain("roleDefinitionId: hibernationRole.id", bicep);
        Assert.Contains("roleDefinitionId: captureRole.id", bicep);
        Assert.Contains("roleDefinitionId: evidenceRole.id", bicep);
        Assert.Contains("scope: evidence\n", bicep.ReplaceLineEndings("\n"));
        Assert.DoesNotContain("targetScope = 'subscription'", bicep);
        Assert.DoesNotContain("Owner", bicep);
        // The durable worker: a Container App with a user-assigned identity, the hub connection string only through a
        // Key Vault reference read with that identity, the same two custom roles (bicep build: infra/validate.sh).
        string worker = File.ReadAllText(Path.Combine(dir, "cloudmem-worker.bicep"));
        Assert.Contains("module worker 'cloudmem-worker.bicep' = if (deployWorker)", bicep);
        Assert.Contains("'Microsoft.App/containerApps@", worker);
        Assert.Contains("'Microsoft.App/managedEnvironments@", worker);
        Assert.Contains("type: 'UserAssigned'", worker);
        Assert.Contains("keyVaultUrl: durableSecret.properties.secretUri", worker);
        Assert.Contains("{ name: 'CLOUDMEM_DURABLE_STORAGE', secretRef: 'durable-storage' }", worker);
        Assert.Contains("args: [ 'durable-worker' ]", worker);
        Assert.Contains("roleDefinitionId: captureRoleId", worker);
        Assert.Contains("roleDefinitionId: evidenceRoleId", worker);
        Assert.DoesNotContain("listKeys().keys", worker);
        string responder = File.ReadAllText(Path.Combine(Fixture.RepoRoot, "src", "Cli", "Commands", "RespondCommands.cs"));
        foreach (Match match in Regex.Matches(bicep + worker, "name: '(CLOUDMEM_[A-Z_]+)'"))
        {
            Assert.Contains($"\"{match.Groups[1].Value}\"", responder);
        }
    }
}
