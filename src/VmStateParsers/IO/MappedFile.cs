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
    private const int MadvHugePage = 14;
    private const int ProtNone = 0, ProtRead = 1;
    private const int MapShared = 0x01, MapPrivate = 0x02, MapFixed = 0x10, MapAnonymous = 0x20, MapNoReserve = 0x4000;
    private static readonly long s_pageSize = Environment.SystemPageSize;

    /// <summary>Alignment of the Linux mapping: one PMD (2 MiB), so page-cache folios of that size map with one entry.</summary>
    internal const long HugeAlignment = 2 << 20;

    private readonly MemoryMappedFile? _map;
    private readonly MemoryMappedViewAccessor? _view;
    private readonly long _mappedLength;
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
        if (OperatingSystem.IsLinux() && TryMap(_handle, length, skew: s_pageSize, hugePages: false, out byte* random))
        {
            if (TryMap(_handle, length, skew: 0, hugePages: true, out byte* scan))
            {
                _pointer = random;
                _scan = scan;
                _mappedLength = length;
                _stream = stream;
                return;
            }
            _ = munmap((IntPtr)random, (nuint)length);
        }
        _map = MemoryMappedFile.CreateFromFile(stream, mapName: null, capacity: 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
        _view = _map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
        byte* pointer = null;
        _view.SafeMemoryMappedViewHandle.AcquirePointer(ref pointer);
        _pointer = pointer + _view.PointerOffset;
        _scan = _pointer;
    }

    /// <summary>The open file when this type mapped it itself (Linux); the .NET mapping owns it otherwise.</summary>
    private readonly FileStream? _stream;

    /// <summary>The view sequential scans read (<see cref="TryGetScanSpan"/>); on Linux a second mapping laid out for huge pages.</summary>
    private byte* _scan;

    /// <summary>
    /// Maps the whole file read-only at an address <paramref name="skew"/> bytes past a 2 MiB boundary (Linux).
    /// <para>
    /// Two views of the file exist on Linux. The scan view (skew 0, huge-page advice) lets the kernel map the file in
    /// 2 MiB steps wherever the page cache holds it in 2 MiB folios, what ext4 and XFS read from disk on current
    /// kernels and what a read through a huge-page-advised mapping asks for: a scan then takes one fault per 2 MiB
    /// instead of one per 64 KiB of fault-around, and each TLB entry covers 512 times more. On a 4 GiB image with 2
    /// cores, touching every cache line costs 0.14 s this way against 0.54 s in 4 KiB pages (docs/BENCHMARKS.md).
    /// Scans release what they read behind them. The random view (skew one page) can never be mapped in 2 MiB steps,
    /// so the spans parsers and page decoders take at random keep a small resident cost (64 KiB of fault-around, not
    /// 2 MiB per touch). False when any call fails; the .NET mapping is used then.
    /// </para>
    /// </summary>
    private static bool TryMap(Microsoft.Win32.SafeHandles.SafeFileHandle handle, long length, long skew, bool hugePages, out byte* pointer)
    {
        pointer = null;
        if (length <= 0 || IntPtr.Size != 8)
        {
            return false;
        }
        nuint reserve = (nuint)(length + 2 * HugeAlignment);
        IntPtr area = mmap(IntPtr.Zero, reserve, ProtNone, MapPrivate | MapAnonymous | MapNoReserve, -1, 0);
        if (area == new IntPtr(-1))
        {
            return false;
        }
        long start = (((long)area + HugeAlignment - 1) & ~(HugeAlignment - 1)) + skew;
        bool added = false;
        handle.DangerousAddRef(ref added);
        try
        {
            IntPtr mapped = mmap((IntPtr)start, (nuint)length, ProtRead, MapShared | MapFixed, (int)handle.DangerousGetHandle(), 0);
            if (mapped != (IntPtr)start)
            {
                _ = munmap(area, reserve);
                return false;
            }
        }
        finally
        {
            if (added)
            {
                handle.DangerousRelease();
            }
        }
        // The reservation's unused head and tail go back; the mapping keeps the file referenced by itself.
        long head = start - (long)area;
        if (head > 0)
        {
            _ = munmap(area, (nuint)head);
        }
        long end = start + ((length + s_pageSize - 1) & ~(s_pageSize - 1));
        long tail = (long)area + (long)reserve - end;
        if (tail > 0)
        {
            _ = munmap((IntPtr)end, (nuint)tail);
        }
        if (hugePages)
        {
            _ = madvise((IntPtr)start, (nuint)length, MadvHugePage);   // advice only: a kernel without THP says no
        }
        pointer = (byte*)start;
        return true;
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
        return TryView(_pointer, offset, length, out ReadOnlySpan<byte> span) ? span : ReadOnlySpan<byte>.Empty;
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
    public bool TryGetSpan(long offset, int length, out ReadOnlySpan<byte> span) => TryView(_pointer, offset, length, out span);

    /// <inheritdoc />
    public bool TryGetScanSpan(long offset, int length, out ReadOnlySpan<byte> span) => TryView(_scan, offset, length, out span);

    /// <summary><paramref name="length"/> bytes of <paramref name="view"/> at <paramref name="offset"/>; false when the range is not wholly in the file.</summary>
    private bool TryView(byte* view, long offset, int length, out ReadOnlySpan<byte> span)
    {
        if (offset < 0 || length < 0 || offset > Length - length)
        {
            span = default;
            return false;
        }
        span = new ReadOnlySpan<byte>(view + offset, length);
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
        if (_scan != _pointer)
        {
            _ = madvise((IntPtr)(_scan + start), (nuint)(stop - start), MadvDontNeed);
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (_stream is not null)
        {
            if (_pointer != null)
            {
                _ = munmap((IntPtr)_pointer, (nuint)_mappedLength);
                _ = munmap((IntPtr)_scan, (nuint)_mappedLength);
                _pointer = null;
                _scan = null;
            }
            _stream.Dispose();
            return;
        }
        if (_pointer != null)
        {
            _pointer = null;
            _scan = null;
            _view!.SafeMemoryMappedViewHandle.ReleasePointer();
        }
        _view!.Dispose();
        _map!.Dispose();
    }

    [DllImport("libc", SetLastError = true)]
    private static extern IntPtr mmap(IntPtr address, nuint length, int protection, int flags, int fd, long offset);

    [DllImport("libc", SetLastError = true)]
    private static extern int munmap(IntPtr address, nuint length);

    [DllImport("libc", SetLastError = true)]
    private static extern int madvise(IntPtr address, nuint length, int advice);
}
