using Azure.Core;

namespace CloudMem.Connectors.Azure;

/// <summary>What an Azure capture is aimed at: a VM's ARM id and the evidence container.</summary>
internal static class AzureTarget
{
    private static readonly ResourceType s_virtualMachine = new("Microsoft.Compute/virtualMachines");
    private static readonly ResourceType s_nsg = new("Microsoft.Network/networkSecurityGroups");

    /// <summary>Parses a full VM resource id; a one-line <see cref="ArgumentException"/> says what is wrong.</summary>
    public static ResourceIdentifier ParseVmId(string text) => Parse(text, s_virtualMachine, "virtual machine");

    /// <summary>Parses a full network security group id.</summary>
    public static ResourceIdentifier ParseNsgId(string text) => Parse(text, s_nsg, "network security group");

    private static ResourceIdentifier Parse(string text, ResourceType expected, string what)
    {
        ResourceIdentifier id;
        try
        {
            id = new ResourceIdentifier(text);
            _ = id.ResourceType;
        }
        catch (FormatException e)
        {
            throw new ArgumentException($"'{text}' is not an Azure resource id ({e.Message.ReplaceLineEndings(" ").Trim()})");
        }
        if (id.ResourceType != expected || id.SubscriptionId is null || id.ResourceGroupName is null)
        {
            throw new ArgumentException(
                $"'{text}' is not a {what} id (expected /subscriptions/SUB/resourceGroups/RG/providers/{expected}/NAME)");
        }
        return id;
    }

    /// <summary>
    /// Splits a container URL (https://ACCOUNT.blob.core.windows.net/CONTAINER, or an emulator's
    /// http://127.0.0.1:PORT/ACCOUNT/CONTAINER) into account and container. A URL with a query (a SAS) is refused:
    /// credentials never travel on the command line.
    /// </summary>
    public static (string Account, string Container) ParseContainerUrl(Uri url)
    {
        if (!url.IsAbsoluteUri || (url.Scheme != Uri.UriSchemeHttps && url.Scheme != Uri.UriSchemeHttp))
        {
            throw new ArgumentException($"--container-url must be an http(s) URL, not '{url}'");
        }
        if (url.Query.Length > 0)
        {
            throw new ArgumentException("--container-url must not carry a query (no SAS on the command line; the credential comes from the environment)");
        }
        string[] segments = url.AbsolutePath.Trim('/').Split('/', StringSplitOptions.RemoveEmptyEntries);
        bool pathStyle = url.IsLoopback || System.Net.IPAddress.TryParse(url.Host, out _);
        if (pathStyle ? segments.Length != 2 : segments.Length != 1)
        {
            throw new ArgumentException(pathStyle
                ? $"--container-url '{url}' must be http(s)://HOST:PORT/ACCOUNT/CONTAINER for an emulator"
                : $"--container-url '{url}' must be https://ACCOUNT.blob.core.windows.net/CONTAINER");
        }
        string account = pathStyle ? segments[0] : url.Host.Split('.')[0];
        return (account, segments[^1]);
    }
}
