using CloudMem.Tests.Support;

namespace CloudMem.Tests.Connectors.Azure;

/// <summary>The Azure commands as a process: argument validation happens before any credential or network use.</summary>
public sealed class AzureCliTests
{
    private const string Vm = "/subscriptions/6f1c2d3e-0a1b-4c5d-8e9f-00112233aabb/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1";

    [Theory]
    [InlineData("--container-url is required", "capture", "azure", Vm)]
    [InlineData("is not a virtual machine id", "capture", "azure", "/subscriptions/6f1c2d3e-0a1b-4c5d-8e9f-00112233aabb/resourceGroups/rg", "--container-url", "https://a.blob.core.windows.net/e")]
    [InlineData("must not carry a query", "capture", "azure", Vm, "--container-url", "https://a.blob.core.windows.net/e?sv=1&sig=SECRETSIG")]
    [InlineData("--method must be runcommand or hibernate", "capture", "azure", Vm, "--container-url", "https://a.blob.core.windows.net/e", "--method", "dump")]
    [InlineData("--tool must be avml or winpmem", "capture", "azure", Vm, "--container-url", "https://a.blob.core.windows.net/e", "--tool", "lime")]
    [InlineData("--arm-endpoint must be an https URL", "capture", "azure", Vm, "--container-url", "https://a.blob.core.windows.net/e", "--arm-endpoint", "http://x")]
    [InlineData("trigger 'defender' is not", "capture", "azure", Vm, "--container-url", "https://a.blob.core.windows.net/e", "--trigger", "defender")]
    [InlineData("--nsg is required", "isolate", "azure", Vm)]
    [InlineData("is not a network security group id", "isolate", "azure", Vm, "--nsg", Vm)]
    public void BadArguments_OneLine_Exit2_NoSecretEchoed(string expected, params string[] args)
    {
        (int exit, string stdout, string stderr) = CliRunner.Run(null, null, args);
        Assert.Equal(2, exit);
        Assert.Contains(expected, stderr);
        Assert.Single(stderr.Trim().Split('\n'));
        Assert.DoesNotContain("SECRETSIG", stdout + stderr);
    }

    [Fact]
    public void Help_ListsAzureUnderCaptureAndIsolate()
    {
        (int exit, string stdout, _) = CliRunner.Run(null, null, "capture", "--help");
        Assert.Equal(0, exit);
        Assert.Contains("azure", stdout);
        (exit, stdout, _) = CliRunner.Run(null, null, "isolate", "azure", "--help");
        Assert.Equal(0, exit);
        Assert.Contains("--nsg", stdout);
    }
}
