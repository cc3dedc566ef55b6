namespace CloudMem.Engine.Core;

/// <summary>Raised when the kernel (or the symbols a plugin needs) cannot be located; the message says what was tried
/// and what would help. One line, shown to the user as it is.</summary>
public sealed class KernelNotFoundException(string message) : Exception(message);
