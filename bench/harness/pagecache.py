"""The page cache of a set of files: evict it, and measure how much of it is
resident.

    evict(paths)     posix_fadvise(POSIX_FADV_DONTNEED) on every file: the
                     kernel drops the file's clean pages from the page cache
                     (dirty ones must be written first: the cold document
                     root is synced once, when it is generated)
    resident(paths)  (resident pages, total pages): mincore(2) over a
                     read-only shared mapping of each file, through libc
                     with ctypes. mincore reports a page only when it is in
                     memory and up to date, and looking faults nothing in.

Only file data is evicted. Inodes, directory entries and extent trees stay
cached: dropping those means `echo 2 > /proc/sys/vm/drop_caches`, which
empties the caches of the whole machine for every user of it.
"""

import ctypes
import ctypes.util
import mmap
import os

PAGE = os.sysconf("SC_PAGE_SIZE")

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
MAP_FAILED = ctypes.c_void_p(-1).value

# mincore's vector: bit 0 of each byte says resident; the other bits are
# reserved. translate() maps every byte to its bit 0, count() adds them up.
_BIT0 = bytes(b & 1 for b in range(256))


def pages_of(size):
    return (size + PAGE - 1) // PAGE


def evict_file(path):
    """Drop one file's clean pages from the page cache."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def evict(paths):
    """posix_fadvise(DONTNEED) on every file; returns how many were evicted
    (a file that vanished is skipped)."""
    n = 0
    for p in paths:
        try:
            evict_file(p)
            n += 1
        except FileNotFoundError:
            pass
    return n


def resident_pages(path):
    """(resident, total) pages of one file, by mincore(2)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        total = pages_of(size)
        if size == 0:
            return 0, 0
        addr = _libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr == MAP_FAILED or addr is None:
            err = ctypes.get_errno()
            raise OSError(err, "mmap %s: %s" % (path, os.strerror(err)))
        try:
            vec = ctypes.create_string_buffer(total)
            if _libc.mincore(addr, size, vec) != 0:
                err = ctypes.get_errno()
                raise OSError(err, "mincore %s: %s" % (path, os.strerror(err)))
            return vec.raw[:total].translate(_BIT0).count(1), total
        finally:
            _libc.munmap(addr, size)
    finally:
        os.close(fd)


def resident(paths):
    """(resident pages, total pages) over the files that exist."""
    have = total = 0
    for p in paths:
        try:
            r, t = resident_pages(p)
        except FileNotFoundError:
            continue
        have += r
        total += t
    return have, total


def resident_frac(paths):
    """The fraction of the files' pages in memory (None for no pages)."""
    have, total = resident(paths)
    return have / total if total else None
