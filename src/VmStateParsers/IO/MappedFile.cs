using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;

namespace CloudMem.VmStateParsers.IO;

/// <summary>
/// A whole file mapped read-only into memory. The only type that touches the raw pointer.
/// </summary>
/// <remarks>
/// The file is opened read-only with <see cref="FileShare.Read"/>: evidence is never modified. Spans handed out stay
/// valid until <see cref="Dispose"/>; disposing while readers are active is a caller error. Safe for concurrent readers.
/// </remarks>
internal sealed unsafe class MappedFile : IByteSource
{
    private const int MadvDontNeed = 4;
    private static readonly long s_pageSize = Environment.SystemPageSize;

    private readonly MemoryMappedFile _map;
    private readonly MemoryMappedViewAccessor _view;
    private byte* _pointer;

    /// <summary>Copies at least this large go straight through pread, smaller ones through the page cache (see <see cref="Read"/>).</summary>
    private const int CopyThroughSyscall = 4096;

    /// <summary>Budget of the cache of file pages that serves small reads (see <see cref="Read"/>).</summary>
    internal const int SmallReadCacheBytes = 2 << 20;

    private readonly PageCache _pages = new(SmallReadCacheBytes);

    private readonly Microsoft.Win32.SafeHandles.SafeFileHandle _handle;

    private MappedFile(string path, FileStream stream, long length)
    {
        Path = path;
        Length = length;
        _handle = stream.SafeFileHandle;
        _map = MemoryMappedFile.CreateFromFile(stream, mapName: null, capacity: 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
        _view = _map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
        byte* pointer = null;
        _view.SafeMemoryMappedViewHandle.AcquirePointer(ref pointer);
        _pointer = pointer + _view.PointerOffset;
    }

    /// <summary>The file's path.</summary>
    public string Path { get; }

    /// <inheritdoc />
    public long Length { get; }

    /// <summary>Opens and maps <paramref name="path"/>; the caller has checked it exists and is not empty.</summary>
    public static MappedFile Open(string path)
    {
        var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1, FileOptions.None);
        try
        {
            long length = stream.Length;
            return new MappedFile(path, stream, length);
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    /// <summary>The whole file as a span when it is below 2 GiB; otherwise use <see cref="TryGetSpan"/>.</summary>
    public ReadOnlySpan<byte> Span(long offset, int length)
    {
        if (offset < 0 || length < 0 || offset > Length - length)
        {
            return ReadOnlySpan<byte>.Empty;
        }
        return new ReadOnlySpan<byte>(_pointer + offset, length);
    }

    /// <inheritdoc />
    /// <remarks>
    /// Reads never touch the mapping, so random reads over a large capture do not grow the resident set (a fault on a
    /// file mapping maps the pages around it too, fault-around, and those stay mapped): page-sized and larger copies go
    /// through pread from the OS page cache, and smaller ones (page-table entries, structure fields) through a bounded
    /// cache of whole file pages filled by pread. Spans (<see cref="TryGetSpan"/>) stay zero-copy over the mapping for
    /// sequential scans, which release what they mapped behind them.
    /// </remarks>
    public int Read(long offset, Span<byte> destination)
    {
        if (offset < 0 || offset >= Length)
        {
            return 0;
        }
        int count = (int)Math.Min(destination.Length, Length - offset);
        Span<byte> target = destination[..count];
        bool done = count >= CopyThroughSyscall ? ReadThrough(offset, target) : ReadSmall(offset, target);
        if (!done)
        {
            new ReadOnlySpan<byte>(_pointer + offset, count).CopyTo(target);
        }
        return count;
    }

    private bool ReadThrough(long offset, Span<byte> destination)
    {
        try
        {
            int done = 0;
            while (done < destination.Length)
            {
                int got = RandomAccess.Read(_handle, destination[done..], offset + done);
                if (got <= 0)
                {
                    break;
                }
                done += got;
            }
            return done == destination.Length;
        }
        catch (IOException)
        {
            return false;
        }
    }

    private bool ReadSmall(long offset, Span<byte> destination)
    {
        while (!destination.IsEmpty)
        {
            long pageStart = offset & ~(long)(PageCache.PageBytes - 1);
            byte[]? page = _pages.TryGet((ulong)pageStart);
            if (page is null)
            {
                // The last page of the file may be partial: the rest reads as zero and is never asked for.
                page = new byte[PageCache.PageBytes];
                int whole = (int)Math.Min(PageCache.PageBytes, Length - pageStart);
                if (!ReadThrough(pageStart, page.AsSpan(0, whole)))
                {
                    return false;
                }
                _pages.Add((ulong)pageStart, page);
            }
            int inPage = (int)(offset - pageStart);
            int count = Math.Min(destination.Length, PageCache.PageBytes - inPage);
            page.AsSpan(inPage, count).CopyTo(destination);
            offset += count;
            destination = destination[count..];
        }
        return true;
    }

    /// <inheritdoc />
    public bool TryGetSpan(long offset, int length, out ReadOnlySpan<byte> span)
    {
        if (offset < 0 || length < 0 || offset > Length - length)
        {
            span = default;
            return false;
        }
        span = new ReadOnlySpan<byte>(_pointer + offset, length);
        return true;
    }

    /// <inheritdoc />
    public void ReleaseResident(long offset, long length)
    {
        if (!OperatingSystem.IsLinux() || length <= 0)
        {
            return;
        }
        // Only whole pages inside the range: partial pages may still be in use by a neighbouring read.
        long end = Math.Min(Length, offset + length);
        long start = (Math.Max(0, offset) + s_pageSize - 1) & ~(s_pageSize - 1);
        long stop = end == Length ? end : end & ~(s_pageSize - 1);
        if (stop <= start)
        {
            return;
        }
        _ = madvise((IntPtr)(_pointer + start), (nuint)(stop - start), MadvDontNeed);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (_pointer != null)
        {
            _pointer = null;
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
        }
        _view.Dispose();
        _map.Dispose();
    }

    [DllImport("libc", SetLastError = true)]
    private static extern int madvise(IntPtr address, nuint length, int advice);
}
