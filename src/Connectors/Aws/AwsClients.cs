using Amazon;
using Amazon.EC2;
using Amazon.Runtime;
using Amazon.Runtime.Credentials;
using Amazon.S3;
using Amazon.SecurityToken;
using Amazon.SimpleSystemsManagement;

namespace CloudMem.Connectors.Aws;

/// <summary>
/// The SDK clients a connector uses, built once from an <see cref="AwsConnection"/>: standard retry mode (the SDK's
/// own retries; we add none on top), credentials from the SDK default chain unless given.
/// </summary>
/// <remarks>Thread-safe (the SDK clients are). Owns and disposes the clients.</remarks>
public sealed class AwsClients : IDisposable
{
    private AwsClients(AwsConnection connection, AWSCredentials credentials, IAmazonEC2 ec2, IAmazonSimpleSystemsManagement ssm, IAmazonS3 s3, IAmazonSecurityTokenService sts, AutoScalingClient autoScaling, IamClient iam)
    {
        Iam = iam;
        Connection = connection;
        Credentials = credentials;
        Ec2 = ec2;
        Ssm = ssm;
        S3 = s3;
        Sts = sts;
        AutoScaling = autoScaling;
    }

    /// <summary>Where.</summary>
    public AwsConnection Connection { get; }

    /// <summary>The resolved credentials (never logged).</summary>
    public AWSCredentials Credentials { get; }

    /// <summary>EC2.</summary>
    public IAmazonEC2 Ec2 { get; }

    /// <summary>Systems Manager.</summary>
    public IAmazonSimpleSystemsManagement Ssm { get; }

    /// <summary>S3.</summary>
    public IAmazonS3 S3 { get; }

    /// <summary>STS.</summary>
    public IAmazonSecurityTokenService Sts { get; }

    /// <summary>IAM (our own small Query client: no IAM SDK package is available to us).</summary>
    public IamClient Iam { get; }

    /// <summary>Auto Scaling (our own small Query client: no Auto Scaling SDK package is available to us).</summary>
    public AutoScalingClient AutoScaling { get; }

    /// <summary>Builds the clients.</summary>
    public static AwsClients Create(AwsConnection connection)
    {
        RegionEndpoint? region = connection.Region is null ? null : RegionEndpoint.GetBySystemName(connection.Region);
        T Configure<T>(T config, string? serviceUrl) where T : ClientConfig => ConfigureClient(config, connection, serviceUrl);

        var ec2Config = Configure(new AmazonEC2Config(), connection.Endpoints.Ec2);
        AWSCredentials credentials = CredentialsFor(connection, ec2Config);
        var s3Config = Configure(new AmazonS3Config
        {
            // Checksums only where S3 requires them: the guest's presigned part uploads carry none either.
            RequestChecksumCalculation = RequestChecksumCalculation.WHEN_REQUIRED,
            ResponseChecksumValidation = ResponseChecksumValidation.WHEN_REQUIRED,
        }, connection.Endpoints.S3);
        if (connection.Endpoints.S3 is not null)
        {
            s3Config.ForcePathStyle = true;
        }
        string regionName = connection.Region ?? region?.SystemName ?? ec2Config.RegionEndpoint?.SystemName ?? "us-east-1";
        return new AwsClients(
            connection,
            credentials,
            new AmazonEC2Client(credentials, ec2Config),
            new AmazonSimpleSystemsManagementClient(credentials, Configure(new AmazonSimpleSystemsManagementConfig(), connection.Endpoints.Ssm)),
            new AmazonS3Client(credentials, s3Config),
            new AmazonSecurityTokenServiceClient(credentials, Configure(new AmazonSecurityTokenServiceConfig(), connection.Endpoints.Sts)),
            new AutoScalingClient(credentials, regionName, connection.Endpoints.AutoScaling),
            new IamClient(credentials, connection.Endpoints.Iam));
    }

    /// <summary>
    /// Standard retry mode (the SDK's retries, none of ours on top); the endpoint override when given (signed for the
    /// connection's region), else the region's endpoint.
    /// </summary>
    internal static T ConfigureClient<T>(T config, AwsConnection connection, string? serviceUrl) where T : ClientConfig
    {
        config.RetryMode = RequestRetryMode.Standard;
        if (serviceUrl is not null)
        {
            config.ServiceURL = serviceUrl;
            config.AuthenticationRegion = connection.Region ?? "us-east-1";
        }
        else if (connection.Region is not null)
        {
            config.RegionEndpoint = RegionEndpoint.GetBySystemName(connection.Region);
        }
        return config;
    }

    /// <summary>The connection's credentials, or the SDK default chain's for <paramref name="config"/>.</summary>
    internal static AWSCredentials CredentialsFor(AwsConnection connection, ClientConfig config)
        => connection.Credentials ?? DefaultAWSCredentialsIdentityResolver.GetCredentials(config);

    /// <inheritdoc />
    public void Dispose()
    {
        Ec2.Dispose();
        Ssm.Dispose();
        S3.Dispose();
        Sts.Dispose();
        AutoScaling.Dispose();
        Iam.Dispose();
    }
}
