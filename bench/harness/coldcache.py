"""The cold-cache profile: a document root far larger than the page cache a
server may fill, requests spread over it, and a disk of known speed.

    ColdRoot    the files: 20,000 of 64 KiB, 2,000 of 4 KiB and 200 of 1 MiB
                (1.5 GiB; --cold-files scales it), generated once beside the
                runs and reused while its manifest still matches every file
                (size, inode, modification time); a run records its digest
    path lists  one path per line (the format `c10k load --paths` reads):
                100,000 requests drawn from a Zipf law (s = 1: the k-th most
                popular file is asked for 1/k as often as the first) or
                uniformly, the popularity order a seeded random permutation
                of the files
    ColdSetup   the run's: kernel.task_delayacct on (and back after), the
                cgroups (cgroups.py), the root, the lists
    ColdWindow  the cell's: evict the root from the page cache before the
                window and check with mincore that it is gone, then count
                what the window read from the disk and how long the
                server's threads waited for it (threads in state D,
                sampled; delay accounting is recorded beside it, but on
                Linux 6.18 it overstates: see counters.delayacct_delta)

What a cold window adds to a repeat (bench/README.md has the table):
disk_iops, cache_limit_bytes, resident_start_frac, resident_end_frac,
evict_s, majflt, io_read_bytes, io_read_bytes_per_req, disk_reads,
disk_read_bytes, blkio_delay_ms (threads in state D, sampled),
blkio_delay_ms_per_s, blkio_delay_by_thread, delayacct_blkio_ms;
loop_stalls and loop_stall_ms come from the model's counters (cell.py).
"""

import bisect
import hashlib
import json
import os
import random
import sys
import time

from . import pagecache
from .cgroups import Cgroups
from .counters import (BlockedSampler, disk_delta, disk_snapshot, enable_delayacct,
                       read_fresh_stats, restore_delayacct)
from .util import GiB, KiB, MiB, UsageError

# The scalar metrics a cold window adds to a repeat; null in every other
# (results.json: null means unavailable, never 0).
COLD_METRICS = ("disk_iops", "cache_limit_bytes", "resident_start_frac", "resident_end_frac",
                "evict_s", "quiesce_s", "majflt", "io_read_bytes", "io_read_bytes_per_req",
                "disk_reads", "disk_read_bytes", "blkio_delay_ms", "blkio_delay_ms_per_s",
                "blkio_delay_span_s", "delayacct_blkio_ms", "loop_stall_ms_per_s",
                "loop_stall_span_s")

LAYOUT = ((20000, 64 * KiB), (2000, 4 * KiB), (200, 1 * MiB))
FULL_FILES = sum(n for n, _ in LAYOUT)
PATHS = 100000             # requests in a path list (wrk walks it round and round)
COLD_MAX_FRAC = 0.01       # a window starts cold when at most 1% of the root is in memory
QUIET_S, QUIET_MAX_S = 0.25, 5.0  # before evicting: no disk read for 0.25 s, waited for 5 s at most
EVICT_TRIES = 3            # evictions before a window that is still warm degrades its round
MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
DEFAULT_IOPS = (200, 5000)  # a spinning disk, a SATA SSD
DEFAULT_CACHE_LIMIT = 256 * MiB


# --- the files ---------------------------------------------------------------------


def scaled_layout(files):
    """LAYOUT scaled to about `files` files in all, each size kept."""
    if files == FULL_FILES:
        return LAYOUT
    return tuple((max(1, round(n * files / FULL_FILES)), size) for n, size in LAYOUT)


def entries(layout):
    """[(relative path, size)] of a layout, in file order."""
    out, i = [], 0
    for n, size in layout:
        for _ in range(n):
            out.append(("%03d/%05d.bin" % (i // 1000, i), size))
            i += 1
    return out


def content(i, size, pattern):
    """The bytes of file i: a header naming it, then the docroot pattern."""
    head = ("c10k cold file %05d, %d bytes\n" % (i, size)).encode()[:size]
    return head + pattern[:size - len(head)]


class ColdRoot:
    """The cold document root under base (generated once, reused)."""

    def __init__(self, base, files=FULL_FILES):
        self.layout = scaled_layout(files)
        self.entries = entries(self.layout)
        self.bytes = sum(s for _, s in self.entries)
        self.dir = os.path.join(base, "cold-docroot-%d" % len(self.entries))
        self.files = {}      # relative path -> [size, sha256, mtime_ns, ino]
        self.generated = False
        self.seconds = 0.0

    def paths(self):
        return [os.path.join(self.dir, rel) for rel, _ in self.entries]

    def _load_manifest(self):
        try:
            with open(os.path.join(self.dir, MANIFEST)) as f:
                doc = json.load(f)
        except (OSError, ValueError):
            return None
        if not isinstance(doc, dict) or doc.get("version") != MANIFEST_VERSION or \
                doc.get("layout") != [list(x) for x in self.layout]:
            return None
        return doc.get("files") if isinstance(doc.get("files"), dict) else None

    def _matches(self, files):
        """Every file still the one the manifest describes."""
        for rel, size in self.entries:
            want = files.get(rel)
            try:
                st = os.stat(os.path.join(self.dir, rel))
            except OSError:
                return False
            if not want or want[0] != size or st.st_size != size or \
                    want[2] != st.st_mtime_ns or want[3] != st.st_ino:
                return False
        return True

    def check_space(self):
        probe = self.dir if os.path.isdir(self.dir) else os.path.dirname(self.dir)
        st = os.statvfs(probe)
        free = st.f_bavail * st.f_frsize
        if free < self.bytes + 64 * MiB:
            raise UsageError("the cold-cache document root needs %d MiB but %s has %d MiB free; "
                             "choose another --out or fewer --cold-files"
                             % (self.bytes // MiB + 64, probe, free // MiB))

    def ensure(self, log=sys.stderr):
        """Reuse the root if its manifest matches, else write it (and sync,
        so that its pages are clean and can be evicted)."""
        t0 = time.monotonic()
        files = self._load_manifest()
        if files and self._matches(files):
            self.files = files
        else:
            os.makedirs(self.dir, exist_ok=True)
            self.check_space()
            print("c10k bench: writing the cold-cache document root: %d files, %d MiB in %s "
                  "(once; later runs reuse it)" % (len(self.entries), self.bytes // MiB,
                                                   self.dir), file=log)
            self.files = self._write()
            self.generated = True
        self.seconds = time.monotonic() - t0
        return self

    def reusable(self):
        """True when ensure() will reuse the files rather than write them."""
        files = self._load_manifest()
        return bool(files) and self._matches(files)

    def write_estimate_s(self, per_gib_s):
        return 0.0 if self.reusable() else per_gib_s * self.bytes / GiB

    def _write(self):
        from .docroot import _block  # docroot imports plan, which imports this module
        pattern = _block() * 16  # 1 MiB
        digests = {}
        for i, (rel, size) in enumerate(self.entries):
            path = os.path.join(self.dir, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            data = content(i, size, pattern)
            with open(path, "wb") as f:
                f.write(data)
            digests[rel] = hashlib.sha256(data).hexdigest()
        os.sync()  # dirty pages cannot be evicted
        files = {}
        for rel, size in self.entries:
            st = os.stat(os.path.join(self.dir, rel))
            files[rel] = [size, digests[rel], st.st_mtime_ns, st.st_ino]
        tmp = os.path.join(self.dir, MANIFEST + ".tmp")
        with open(tmp, "w") as f:
            json.dump({"version": MANIFEST_VERSION, "layout": [list(x) for x in self.layout],
                       "files": files}, f)
        os.replace(tmp, os.path.join(self.dir, MANIFEST))
        return files

    def digest(self):
        """One SHA-256 over every file's name and digest, in order."""
        h = hashlib.sha256()
        for rel, _ in self.entries:
            h.update(("%s %s\n" % (rel, self.files[rel][1])).encode())
        return h.hexdigest()

    def sample(self):
        """(URL path, size, sha256) of one file of each size, for the check
        before each cell."""
        out, seen = [], set()
        for rel, size in self.entries:
            if size not in seen:
                seen.add(size)
                out.append(("/" + rel, size, self.files[rel][1]))
        return out

    def describe(self):
        return {"path": self.dir, "files": len(self.entries), "bytes": self.bytes,
                "layout": [{"count": n, "size": s} for n, s in self.layout],
                "sha256": self.digest(), "generated": self.generated,
                "prepare_s": round(self.seconds, 2)}


# --- the requests ----------------------------------------------------------------------


def path_list(files, dist, zipf_s, seed, n=PATHS):
    """n URL paths over files ([(relative path, size)]): Zipf(s) or uniform
    over a seeded random popularity order."""
    rng = random.Random(seed)
    order = list(range(len(files)))
    rng.shuffle(order)  # popularity rank -> file
    if dist == "uniform":
        ranks = [rng.randrange(len(files)) for _ in range(n)]
    else:
        cum, total = [], 0.0
        for k in range(len(files)):
            total += 1.0 / (k + 1) ** zipf_s
            cum.append(total)
        ranks = [bisect.bisect_left(cum, rng.random() * total) for _ in range(n)]
    return ["/" + files[order[min(k, len(files) - 1)]][0] for k in ranks]


def list_stats(paths, sizes):
    """What a path list touches: distinct files and their bytes."""
    distinct = set(paths)
    return {"requests": len(paths), "distinct_files": len(distinct),
            "distinct_bytes": sum(sizes[p] for p in distinct)}


# --- the run -----------------------------------------------------------------------------


def existing(path):
    """path, or its nearest ancestor that exists."""
    path = os.path.abspath(path)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return path


class ColdSetup:
    """What a cold-cache run sets up once and undoes at the end."""

    def __init__(self, base, files, cache_limit, name=None):
        self.root = ColdRoot(base, files)
        self.cache_limit = cache_limit
        # the root's disk: where it is, or will be once written
        self.cgroups = Cgroups(name or "c10k-bench-%d" % os.getpid(), existing(self.root.dir),
                               cache_limit)
        self.delayacct_old = None
        self.delayacct_why = None
        self.notes = []

    def probe(self):
        """Can the disk be throttled here? (at plan time, before anything is made)"""
        self.cgroups.probe()
        return self

    def prepare(self, run_dir, scenarios, seed):
        """Root, path lists, cgroups, delay accounting. Returns self."""
        self.root.ensure()
        sizes = {"/" + rel: size for rel, size in self.root.entries}
        for sc in scenarios:
            cold = sc["cold"]
            paths = path_list(self.root.entries, cold["dist"], cold["zipf_s"], seed)
            with open(os.path.join(run_dir, cold["paths_file"]), "w") as f:
                f.write("\n".join(paths) + "\n")
            cold.update(list_stats(paths, sizes))
        self.cgroups.make()
        for what, why in (("disk", self.cgroups.disk_why), ("page cache", self.cgroups.memory_why)):
            if why:
                self.notes.append("%s not limited: %s" % (what, why))
        self.delayacct_old, self.delayacct_why = enable_delayacct()
        if self.delayacct_why:
            self.notes.append("time blocked on I/O unavailable: " + self.delayacct_why)
        return self

    def wrap(self, argv):
        return self.cgroups.wrap(argv)

    def cleanup(self):
        restore_delayacct(self.delayacct_old)
        self.delayacct_old = None
        left = self.cgroups.remove()
        if left:
            print("c10k bench: warning: could not remove cgroup(s) %s" % ", ".join(left),
                  file=sys.stderr)

    def describe(self):
        d = {"root": self.root.describe(), "cache_limit_bytes": self.cache_limit,
             "cold_max_frac": COLD_MAX_FRAC, "delayacct": self.delayacct_why is None,
             "delayacct_unavailable": self.delayacct_why, "notes": self.notes}
        d.update(self.cgroups.describe())
        return d


class ColdWindow:
    """One cold window: evict() and check before the window's counters
    start, start() and stop() tight around the load generator, after() when
    the window's counters are read."""

    def __init__(self, setup, sc, pid):
        self.setup, self.sc, self.pid = setup, sc, pid
        self.files = setup.root.paths()
        self.disk0 = self.cg0 = self.disk1 = self.cg1 = None
        self.blocked = BlockedSampler(pid)
        self.stats_ns = []  # when the stats files read were written

    def _reads_so_far(self):
        counts = self.setup.cgroups.disk_counts()
        return counts[1] if counts else disk_snapshot(self.pid)["read_bytes"]

    def quiesce(self):
        """Wait until the server has read nothing from the disk for QUIET_S:
        reads the warm-up started (a helper's, a blocked thread's) would
        otherwise land after the eviction. Returns the seconds waited."""
        t0 = last_change = time.monotonic()
        seen = self._reads_so_far()
        while time.monotonic() - last_change < QUIET_S and time.monotonic() - t0 < QUIET_MAX_S:
            time.sleep(0.05)
            now = self._reads_so_far()
            if now != seen:
                seen, last_change = now, time.monotonic()
        return time.monotonic() - t0

    def evict(self, rep):
        """Empty the root from the page cache once the server is quiet; the
        window starts cold. Pages left after an eviction are dirty ones (a
        root just written), reads still in flight (a server that had not
        finished the warm-up's requests when quiesce() gave up waiting), or
        pages the kernel still holds after a server sent them (bench/README,
        the cold-cache profile), so the bench writes them, waits for quiet
        again and evicts again, up to EVICT_TRIES times. A window that still
        starts warm degrades its round (cold_degraded_by): it would be
        faster than a cold one."""
        waited = [self.quiesce()]
        t0 = time.monotonic()
        frac = self._evict_once()
        tries = 1
        while frac is not None and frac > COLD_MAX_FRAC and tries < EVICT_TRIES:
            os.sync()
            waited.append(self.quiesce())
            frac = self._evict_once()
            tries += 1
        rep.update(disk_iops=self.sc["cold"]["disk_iops"],
                   cache_limit_bytes=self.setup.cgroups.mem_limit
                   if self.setup.cgroups.memory else None,
                   resident_start_frac=frac, evict_s=time.monotonic() - t0,
                   quiesce_s=sum(waited), evict_tries=tries,
                   quiesce_timed_out=any(w >= QUIET_MAX_S for w in waited))
        if frac is not None and frac > COLD_MAX_FRAC:
            rep["cold_degraded_by"] = [
                "the window started warm: %.1f%% of the document root was still in memory "
                "after %d evictions (at most %g%% is cold)"
                % (100 * frac, tries, 100 * COLD_MAX_FRAC)]

    def _evict_once(self):
        pagecache.evict(self.files)
        return pagecache.resident_frac(self.files)

    def start(self):
        self.disk0 = disk_snapshot(self.pid)
        self.cg0 = self.setup.cgroups.disk_counts()
        self.blocked.start()

    def stop(self):
        self.blocked.finish()
        self.disk1 = disk_snapshot(self.pid)
        self.cg1 = self.setup.cgroups.disk_counts()

    def close(self):
        """Stop the sampler, whatever happened (idempotent)."""
        self.blocked.finish()

    def read_stats(self, path, since_ns):
        """The model's counters as counters.read_fresh_stats gives them,
        remembering when each read file was written: the loop's stalls are
        counted between those two moments, so that is what they are per
        second of (stalls of the warm-up's tail or of requests still served
        after wrk stopped fall in it, not in wrk's window)."""
        if not path:
            return None, None
        counters, why, mtime = read_fresh_stats(path, since_ns, with_time=True)
        self.stats_ns.append(mtime if counters is not None else None)
        return counters, why

    def stats_span_s(self):
        """Seconds between the two stats files read, or None."""
        if len(self.stats_ns) != 2 or None in self.stats_ns:
            return None
        return (self.stats_ns[1] - self.stats_ns[0]) / 1e9

    def after(self, rep):
        """What the window read, waited for, and left in memory."""
        rep["resident_end_frac"] = pagecache.resident_frac(self.files)
        rep.update(disk_delta(self.disk0, self.disk1, self.setup.delayacct_why))
        rep.update(self.blocked.result())
        if self.cg0 is not None and self.cg1 is not None:
            rep.update(disk_reads=self.cg1[0] - self.cg0[0],
                       disk_read_bytes=self.cg1[1] - self.cg0[1])
        else:
            rep.update(disk_reads=None, disk_read_bytes=None)

    def per_request(self, rep):
        """Per-request and per-second figures, once the load's are known.
        The disk's counters and the stall counters cover the same span, from
        just before the first stats file read to just after the second (the
        window, and what the server was still serving of it after wrk
        stopped); each is per second of its own measure of that span."""
        req, secs = rep.get("requests"), rep.get("blkio_delay_span_s")
        rb = rep.get("io_read_bytes")
        rep["io_read_bytes_per_req"] = rb / req if rb is not None and req else None
        bd = rep.get("blkio_delay_ms")
        rep["blkio_delay_ms_per_s"] = bd / secs if bd is not None and secs else None
        ls, span = rep.get("loop_stall_ms"), self.stats_span_s()
        rep["loop_stall_span_s"] = span
        rep["loop_stall_ms_per_s"] = ls / span if ls is not None and span else None
