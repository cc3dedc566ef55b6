using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace CloudMem.Tests.Support;

/// <summary>
/// Local emulators installed by tests/emulators/setup.sh (CLOUDMEM_EMULATORS, default ~/.cache/cloudmem/emulators).
/// Tests that need one skip with the reason when it is absent, or fail when CLOUDMEM_REQUIRE_FIXTURES=1.
/// </summary>
public static class Emulators
{
    /// <summary>The emulator cache.</summary>
    public static string Root { get; } = Environment.GetEnvironmentVariable("CLOUDMEM_EMULATORS") is { Length: > 0 } fromEnv
        ? fromEnv
        : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "cloudmem", "emulators");

    /// <summary>Path of an emulator file (relative to <see cref="Root"/>), skipping the test when it is missing.</summary>
    public static string Require(string relativePath)
    {
        string path = Path.Combine(Root, relativePath);
        if (File.Exists(path))
        {
            return path;
        }
        string reason = $"emulator {path} is missing: run tests/emulators/setup.sh (tests/run.sh does)";
        if (Environment.GetEnvironmentVariable("CLOUDMEM_REQUIRE_FIXTURES") == "1")
        {
            throw new InvalidOperationException(reason);
        }
        Skip.If(true, reason);
        return path;
    }

    /// <summary>A free TCP port on 127.0.0.1 (bound and released; the caller binds it next).</summary>
    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>Waits until something accepts connections on 127.0.0.1:<paramref name="port"/>.</summary>
    public static void WaitForPort(int port, TimeSpan timeout, Process? process = null)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < timeout)
        {
            if (process is { HasExited: true })
            {
                throw new InvalidOperationException($"emulator exited with code {process.ExitCode} before listening on port {port}");
            }
            try
            {
                using var client = new TcpClient();
                client.Connect(IPAddress.Loopback, port);
                return;
            }
            catch (SocketException)
            {
                Thread.Sleep(50);
            }
        }
        throw new TimeoutException($"nothing listens on 127.0.0.1:{port} after {timeout.TotalSeconds} s");
    }
}

/// <summary>An emulator child process, killed (with its children) on dispose; its output is kept for failure messages.</summary>
public sealed class EmulatorProcess : IDisposable
{
    private readonly Process _process;
    private readonly System.Text.StringBuilder _output = new();

    /// <summary>Starts <paramref name="fileName"/> and waits until it listens on <paramref name="port"/> (0: a worker that listens on nothing, not waited for).</summary>
    public EmulatorProcess(string fileName, IEnumerable<string> arguments, int port, string? workingDirectory = null, IReadOnlyDictionary<string, string>? environment = null)
    {
        var start = new ProcessStartInfo(fileName)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = workingDirectory ?? Path.GetTempPath(),
        };
        foreach (string argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }
        foreach (KeyValuePair<string, string> variable in environment ?? new Dictionary<string, string>())
        {
            start.Environment[variable.Key] = variable.Value;
        }
        _process = Process.Start(start)!;
        _process.OutputDataReceived += (_, e) => Append(e.Data);
        _process.ErrorDataReceived += (_, e) => Append(e.Data);
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
        Port = port;
        try
        {
            if (port != 0)
            {
                Emulators.WaitForPort(port, TimeSpan.FromSeconds(30), _process);
            }
        }
        catch (Exception e)
        {
            Dispose();
            throw new InvalidOperationException($"{e.Message}; output: {Output}", e);
        }
    }

    /// <summary>The port it listens on.</summary>
    public int Port { get; }

    /// <summary>Whether it has exited.</summary>
    public bool HasExited => _process.HasExited;

    /// <summary>What it printed so far.</summary>
    public string Output
    {
        get
        {
            lock (_output)
            {
                return _output.ToString();
            }
        }
    }

    private void Append(string? line)
    {
        if (line is null)
        {
            return;
        }
        lock (_output)
        {
            if (_output.Length < 1 << 20)
            {
                _output.AppendLine(line);
            }
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                _process.WaitForExit(5000);
            }
        }
        catch (InvalidOperationException)
        {
        }
        _process.Dispose();
    }
}
