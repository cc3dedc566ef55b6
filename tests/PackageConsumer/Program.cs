using CloudMem.Engine.Linux;
using CloudMem.VmStateParsers;

// Open a capture (any supported format, read in place), locate the Linux kernel, list its processes.
using RunMappedMemory capture = CaptureOpener.Open(args[0]);
LinuxContext linux = LinuxContext.Open(capture);
foreach (LinuxProcess process in LinuxPlugins.PsList(linux).Rows)
{
    Console.WriteLine($"{process.Pid}\t{process.Ppid}\t{process.Comm}");
}
