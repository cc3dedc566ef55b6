using Amazon.Runtime;
using CloudMem.Connectors.Core;
using CloudMem.Tests.Support;

namespace CloudMem.Tests.Connectors.Aws;

/// <summary>
/// Presigned URLs signed with temporary credentials stop working when those expire: a capture whose URLs must live
/// longer than the signing session is refused before anything is created; a long enough session goes through and the
/// manifest says until when the credentials were valid. The credentials are real SDK refreshing credentials (the
/// kind AssumeRole and SSO give) with a short lifetime.
/// </summary>
public sealed class AwsCredentialExpiryTests
{
    private sealed class ShortLived(TimeSpan life) : RefreshingAWSCredentials
    {
        protected override CredentialsRefreshState GenerateNewCredentials()
            => new(new ImmutableCredentials(AwsHarness.AccessKey, AwsHarness.SecretKey, AwsHarness.SessionToken), DateTime.UtcNow + life);
    }

    [SkippableFact]
    public async Task Session_ending_before_the_urls_is_refused_in_one_line_before_anything_is_created()
    {
        string fixture = Fixture.Require("memory.lime");
        using var world = new AwsHarness(fixture, credentials: new ShortLived(TimeSpan.FromMinutes(10)));

        var error = await Assert.ThrowsAsync<CaptureException>(() => world.Connector().CaptureAsync(CancellationToken.None));

        Assert.Matches(@"^the signing credentials expire at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ, before the presigned URLs must stop working \(.*command timeout .* URL margin .*\): use a longer session", error.Message);
        Assert.DoesNotContain('\n', error.Message);
        Assert.DoesNotContain(world.Fake.Operations, o => o is "ssm:SendCommand" or "ssm:PutParameter" or "ec2:CreateTags");
        Assert.Empty(world.Fake.GuestOutputs);
    }

    [SkippableFact]
    public async Task Session_outliving_the_urls_goes_through_and_is_recorded()
    {
        string fixture = Fixture.Require("memory.lime");
        using var world = new AwsHarness(fixture, credentials: new ShortLived(TimeSpan.FromHours(2)));

        CaptureResult result = await world.Connector().CaptureAsync(CancellationToken.None);

        Assert.Equal(CustodyStatus.Completed, result.Manifest.Status);
        Assert.Contains(result.Manifest.Steps, s => s.Action == "presign" && s.Detail.StartsWith("signing credentials valid until", StringComparison.Ordinal));
    }
}
