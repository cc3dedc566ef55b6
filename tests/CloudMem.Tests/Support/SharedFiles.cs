namespace CloudMem.Tests.Support;

/// <summary>
/// Development data kept in the workspace's shared/ folder beside the repository (never committed): the main
/// checkout and CI have it at RepoRoot/../shared, a worktree under wt/ at RepoRoot/../../shared, or
/// CLOUDMEM_SHARED names it. Tests that need a file skip with the reason when it is absent.
/// </summary>
public static class SharedFiles
{
    /// <summary>Path of shared/<paramref name="parts"/>, skipping the test when it is missing.</summary>
    public static string Require(params string[] parts)
    {
        string? path = Find(parts);
        Skip.If(path is null, $"shared file {string.Join('/', parts)} not present (development-only data)");
        return path!;
    }

    /// <summary>Path of shared/<paramref name="parts"/>, or null.</summary>
    public static string? Find(params string[] parts)
    {
        string? fromEnv = Environment.GetEnvironmentVariable("CLOUDMEM_SHARED");
        string[] roots = fromEnv is { Length: > 0 }
            ? [fromEnv]
            : [Path.Combine(Fixture.RepoRoot, "..", "shared"), Path.Combine(Fixture.RepoRoot, "..", "..", "shared")];
        foreach (string root in roots)
        {
            string path = Path.Combine([root, .. parts]);
            if (File.Exists(path))
            {
                return Path.GetFullPath(path);
            }
        }
        return null;
    }
}
