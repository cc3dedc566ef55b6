using System.Globalization;
using System.Text.Json.Nodes;
using System.Xml.Linq;
using Amazon.Runtime;

namespace CloudMem.Connectors.Aws;

/// <summary>
/// The two IAM calls isolation's opt-in session revocation needs (GetInstanceProfile, PutRolePolicy) over the Query
/// protocol (<see cref="AwsQueryClient"/>; no IAM SDK package is available to us). IAM is global: signed for us-east-1.
/// </summary>
/// <remarks>Thread-safe.</remarks>
public sealed class IamClient : IDisposable
{
    private static readonly XNamespace s_ns = "https://iam.amazonaws.com/doc/2010-05-08/";
    private readonly AwsQueryClient _query;

    /// <summary>Creates the client (the given endpoint, or https://iam.amazonaws.com/).</summary>
    public IamClient(AWSCredentials credentials, string? serviceUrl)
    {
        _query = new AwsQueryClient(credentials, "iam", "2010-05-08", "us-east-1", new Uri(serviceUrl ?? "https://iam.amazonaws.com/"));
    }

    /// <summary>The role names of an instance profile.</summary>
    public async Task<(IReadOnlyList<string> Roles, string? RequestId)> GetInstanceProfileRolesAsync(string profileName, CancellationToken cancellationToken)
    {
        AwsQueryResponse response = await _query.CallAsync("GetInstanceProfile", [new("InstanceProfileName", profileName)], cancellationToken).ConfigureAwait(false);
        string[] roles = [.. response.Body.Descendants(s_ns + "Roles").Elements(s_ns + "member")
            .Select(m => (string?)m.Element(s_ns + "RoleName")).OfType<string>()];
        return (roles, response.RequestId);
    }

    /// <summary>Puts (creates or replaces) an inline policy on a role.</summary>
    public async Task<string?> PutRolePolicyAsync(string roleName, string policyName, string document, CancellationToken cancellationToken)
        => (await _query.CallAsync("PutRolePolicy",
        [
            new("RoleName", roleName),
            new("PolicyName", policyName),
            new("PolicyDocument", document),
        ], cancellationToken).ConfigureAwait(false)).RequestId;

    /// <summary>
    /// The AWSRevokeOlderSessions pattern: deny every action to sessions of the role issued before
    /// <paramref name="issuedBefore"/> (aws:TokenIssueTime); sessions issued later (e.g. the role on other, healthy
    /// instances after they refresh) are unaffected.
    /// </summary>
    public static string RevokeOlderSessionsPolicy(DateTimeOffset issuedBefore) => new JsonObject
    {
        ["Version"] = "2012-10-17",
        ["Statement"] = new JsonArray(new JsonObject
        {
            ["Sid"] = "CloudMemRevokeOlderSessions",
            ["Effect"] = "Deny",
            ["Action"] = new JsonArray("*"),
            ["Resource"] = new JsonArray("*"),
            ["Condition"] = new JsonObject
            {
                ["DateLessThan"] = new JsonObject
                {
                    ["aws:TokenIssueTime"] = issuedBefore.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture),
                },
            },
        }),
    }.ToJsonString();

    /// <inheritdoc />
    public void Dispose() => _query.Dispose();
}
