using System.Text.Json;
using System.Text.RegularExpressions;
using CloudMem.Engine.Symbols;
using CloudMem.ImageBuilder;

// cloudmem-imagebuilder: lays out a synthetic x64 Windows memory image from a real kernel ISF and a scenario, and
// writes the raw image plus a JSON manifest of everything laid out (the truth the plugins are compared with).
return ImageBuilderCli.Run(args);

internal static partial class ImageBuilderCli
{
    private const string Usage =
        "usage: cloudmem-imagebuilder --isf ISF(GUID-AGE.json[.xz]) --out IMAGE.raw [--manifest M.json] " +
        "[--scenario FILE.json|typical|attack|network|registry] [--tcpip-isf GUID-AGE.json.xz] [--size BYTES|NNNm|Ng] [--extra-processes N] [--self-ref HEX] [--dense yes] [--pad-to NNNg] [--low-stub no]; " +
        "or --write-scenario FILE.json [--scenario typical|attack|network]";

    public static int Run(string[] args)
    {
        if (args is ["-h" or "--help"])
        {
            Console.WriteLine(Usage);
            Console.WriteLine("Lays out a Windows x64 memory image on a real kernel's ISF layouts, with a manifest (JSON) of everything laid out.");
            Console.WriteLine("Scenarios: typical, attack, network (tcpip.sys endpoints; needs the tcpip.pdb ISFs beside the kernel's), registry (hives via hivexregedit), or a JSON file (--write-scenario writes a built-in one).");
            return 0;
        }
        try
        {
            var options = Parse(args);
            if (options.TryGetValue("write-scenario", out string? scenarioOut))
            {
                // Writes a built-in scenario as JSON (the starting point for a scenario file of one's own).
                WindowsScenario builtIn = options.GetValueOrDefault("scenario", "attack") switch
                {
                    "typical" => new WindowsScenario { Name = "typical", Processes = WindowsImageBuilder.TypicalScenario() },
                    "network" => WindowsImageBuilder.NetworkScenario(),
                    _ => WindowsImageBuilder.AttackScenario(),
                };
                File.WriteAllText(scenarioOut, JsonSerializer.Serialize(builtIn, WindowsScenario.Json));
                return 0;
            }
            string isf = options.GetValueOrDefault("isf") ?? throw new ArgumentException("--isf is required");
            string output = options.GetValueOrDefault("out") ?? throw new ArgumentException("--out is required");
            Match name = IsfName().Match(Path.GetFileName(isf));
            if (!name.Success)
            {
                throw new ArgumentException($"{isf}: the ISF file name must be <GUID>-<age>.json[.xz] (it names the kernel the image pretends to be)");
            }
            TypeModel types = IsfLoader.Load(isf);
            var builder = new WindowsImageBuilder(types, name.Groups[1].Value.ToUpperInvariant(), uint.Parse(name.Groups[2].Value))
            {
                ImageSize = options.TryGetValue("size", out string? size) ? ParseSize(size) : 64 << 20,
                SelfRefIndex = options.TryGetValue("self-ref", out string? selfRef) ? Convert.ToInt32(selfRef, 16) : 0x1ED,
                // --low-stub no: no PROCESSOR_START_BLOCK in the first megabyte (kernel discovery must fall back to scanning)
                LowStub = options.GetValueOrDefault("low-stub") == "no" ? null : 0x13000,
            };
            WindowsScenario scenario = options.GetValueOrDefault("scenario", "attack") switch
            {
                "typical" => new WindowsScenario { Name = "typical", Processes = WindowsImageBuilder.TypicalScenario() },
                "attack" => WindowsImageBuilder.AttackScenario(),
                "network" => WindowsImageBuilder.NetworkScenario(),
                // The attack scenario plus SYSTEM, SOFTWARE, SAM and NTUSER.DAT hives written by hivexregedit (AES-era SAM from build 14393).
                "registry" => RegistryScenario.With(WindowsImageBuilder.AttackScenario(), builder),
                string file => WindowsScenario.Load(file),
            };
            if (options.TryGetValue("extra-processes", out string? extra))
            {
                scenario = scenario with { Processes = [.. scenario.Processes, .. WindowsImageBuilder.ExtraProcesses(int.Parse(extra))] };
            }
            if (scenario.Network is not null)
            {
                // tcpip.pdb's table: --tcpip-isf, else the one the scenario names, beside the kernel's (windows/tcpip.pdb/).
                string table = options.GetValueOrDefault("tcpip-isf") ?? Path.Combine(Path.GetDirectoryName(Path.GetDirectoryName(Path.GetFullPath(isf)))!,
                    "tcpip.pdb", WindowsImageBuilder.TcpipTable(scenario.Network, name.Groups[1].Value.ToUpperInvariant()) + ".json.xz");
                builder.TcpipSymbols = IsfLoader.Load(table);
            }
            (byte[] image, WindowsImageManifest manifest) = builder.Build(scenario);
            bool dense = options.GetValueOrDefault("dense") == "yes";
            if (dense)
            {
                // Benchmarks: every page the layout left unused gets data (a seeded generator: the same image every time).
                var random = new Random(0x5EED);
                foreach (ulong page in builder.Image.FreePages())
                {
                    Filler(random, image.AsSpan((int)page, PhysicalImage.Page));
                }
            }
            File.WriteAllBytes(output, image);
            if (options.TryGetValue("pad-to", out string? padTo) && ParseSize(padTo) is long padded && padded > image.Length)
            {
                // Physical memory above what the layout can address (its byte array stops at 2 GiB): data pages (--dense) or zeros.
                using var file = new FileStream(output, FileMode.Append, FileAccess.Write);
                byte[] chunk = new byte[4 << 20];
                var random = new Random(0xF111);
                for (long at = image.Length; at < padded; at += chunk.Length)
                {
                    int count = (int)Math.Min(chunk.Length, padded - at);
                    if (dense)
                    {
                        for (int page = 0; page < count; page += PhysicalImage.Page)
                        {
                            Filler(random, chunk.AsSpan(page, Math.Min(PhysicalImage.Page, count - page)));
                        }
                    }
                    file.Write(chunk, 0, count);
                }
            }
            foreach (ScenarioHive hive in scenario.Hives ?? [])
            {
                // The regf files laid out, beside the image (for independent readers such as impacket's secretsdump).
                File.WriteAllBytes($"{output}.{hive.FileFullPath[(hive.FileFullPath.LastIndexOf('\\') + 1)..]}.hive", hive.Bytes!);
            }
            string manifestPath = options.GetValueOrDefault("manifest") ?? Path.ChangeExtension(output, ".manifest.json");
            File.WriteAllText(manifestPath, JsonSerializer.Serialize(manifest, WindowsScenario.Json));
            Console.WriteLine($"{output}: {image.Length} bytes, {manifest.Processes.Count} listed + {manifest.Unlinked.Count} unlinked processes, " +
                              $"{manifest.Drivers.Count} drivers, {(manifest.Network is null ? "" : $"{manifest.Network.Count} network objects, ")}DTB 0x{manifest.Dtb:X}, kernel 0x{manifest.KernelBase:X}; manifest {manifestPath}");
            return 0;
        }
        catch (Exception e) when (e is ArgumentException or FormatException or IOException or InvalidOperationException or InvalidDataException or JsonException or SymbolFormatException)
        {
            Console.Error.WriteLine($"cloudmem-imagebuilder: error: {e.Message}");
            Console.Error.WriteLine(Usage);
            return 2;
        }
    }

    /// <summary>One page of filler: three in four pages text-like (words and numbers, as file and heap data), the rest random bytes.</summary>
    private static void Filler(Random random, Span<byte> page)
    {
        if (random.Next(4) == 0)
        {
            random.NextBytes(page);
            return;
        }
        ReadOnlySpan<byte> words = "the memory of a running machine holds text, code and data; 0123456789 config=value path=/var/lib user=svc "u8;
        int start = random.Next(words.Length);
        for (int i = 0; i < page.Length; i++)
        {
            page[i] = words[(start + i) % words.Length];
        }
        for (int i = 0; i + 8 <= page.Length; i += 256)
        {
            random.NextBytes(page.Slice(i, 8));
        }
    }

    private static Dictionary<string, string> Parse(string[] args)
    {
        var options = new Dictionary<string, string>(StringComparer.Ordinal);
        for (int i = 0; i < args.Length; i++)
        {
            if (!args[i].StartsWith("--", StringComparison.Ordinal) || i + 1 >= args.Length)
            {
                throw new ArgumentException($"unexpected argument '{args[i]}'");
            }
            options[args[i][2..]] = args[++i];
        }
        return options;
    }

    private static long ParseSize(string text)
    {
        text = text.Trim().ToLowerInvariant();
        long unit = text.EndsWith('g') ? 1L << 30 : text.EndsWith('m') ? 1L << 20 : 1;
        return long.Parse(unit == 1 ? text : text[..^1]) * unit;
    }

    [GeneratedRegex(@"^([0-9A-Fa-f]{32})-([0-9]+)\.json(\.xz)?$")]
    private static partial Regex IsfName();
}
