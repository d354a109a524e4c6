"""A disk of known speed and a bounded page cache for the servers of a run:
the cgroups of the cold-cache profile.

    disk     a read-IOPS limit on the block device under the document root:
             cgroup v1 blkio.throttle.read_iops_device, or v2 io.max riops
    memory   a memory limit below the document root's size, so the page
             cache a server fills cannot hold the whole root: v1
             memory.limit_in_bytes, or v2 memory.max (it counts page cache
             the server reads in as well as its own memory)

One cgroup per controller, made below the cgroup the bench itself runs in
(so whatever limits that one has still apply), named c10k-bench-PID, and
removed at the end of the run. Each server is started inside it by a
/bin/sh wrapper that writes its own pid into cgroup.procs and then execs
the server, so the server's threads and children are born inside. Anything
that cannot be set up says why (`why`), and the run goes on without it:
the profile then skips what needs it, visibly.
"""

import os
import time

from .util import read_file

V1_ROOT = "/sys/fs/cgroup"


def parse_mountinfo(text):
    """[(mount point, fs type, super options)] of the cgroup mounts."""
    out = []
    for line in text.splitlines():
        pre, sep, post = line.partition(" - ")
        f, p = pre.split(), post.split()
        if sep and len(f) >= 5 and len(p) >= 3 and p[0] in ("cgroup", "cgroup2"):
            out.append((f[4].replace("\\040", " "), p[0], p[2]))
    return out


def parse_proc_cgroup(text):
    """/proc/self/cgroup -> {controller: path}; the v2 path under key ''."""
    out = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        for ctl in (parts[1].split(",") if parts[1] else [""]):
            out[ctl] = parts[2]
    return out


def block_device(path, sys_root="/sys"):
    """("MAJ:MIN" of the whole disk under path, None) or (None, why).
    A partition is throttled on its disk (blk-throttle works per queue)."""
    st = os.stat(path)
    major, minor = os.major(st.st_dev), os.minor(st.st_dev)
    if major == 0:
        return None, ("%s is on a filesystem without a block device of its own (device 0:%d: "
                      "tmpfs, overlay, btrfs or a network filesystem)" % (path, minor))
    node = os.path.join(sys_root, "dev", "block", "%d:%d" % (major, minor))
    if not os.path.exists(node):
        return None, "%s: no %s for device %d:%d" % (path, node, major, minor)
    if os.path.exists(os.path.join(node, "partition")):
        disk = read_file(os.path.join(os.path.realpath(node), "..", "dev")).strip()
        if disk:
            return disk, None
    return "%d:%d" % (major, minor), None


class Cgroups:
    """The run's cgroups. probe() finds what this machine offers; make()
    creates them; set_disk_iops() changes the disk limit between cells;
    wrap() starts a command inside; remove() cleans up."""

    def __init__(self, name, docroot, mem_limit, cg_root=V1_ROOT, proc="/proc/self",
                 sys_root="/sys"):
        self.name, self.docroot, self.mem_limit = name, docroot, mem_limit
        self.cg_root, self.proc, self.sys_root = cg_root, proc, sys_root
        self.device = None
        self.disk = self.memory = None       # (version, directory) once made
        self.disk_why = self.memory_why = None
        self._disk_parent = self._memory_parent = None  # (version, directory)
        self.iops = None

    # -- what exists ---------------------------------------------------------------

    def _parent(self, controller):
        """(version, directory of our own cgroup in that hierarchy) or (None, why)."""
        mounts = parse_mountinfo(read_file(os.path.join(self.proc, "mountinfo")))
        mine = parse_proc_cgroup(read_file(os.path.join(self.proc, "cgroup")))
        for point, fstype, opts in mounts:
            if fstype == "cgroup" and controller in opts.split(",") and controller in mine:
                return 1, os.path.join(point, mine[controller].lstrip("/"))
        v2 = {"blkio": "io", "memory": "memory"}[controller]
        for point, fstype, _ in mounts:
            if fstype == "cgroup2" and "" in mine:
                parent = os.path.join(point, mine[""].lstrip("/"))
                have = read_file(os.path.join(parent, "cgroup.controllers")).split()
                if v2 in have:
                    return 2, parent
                return None, ("cgroup v2 at %s offers no %s controller here (%s), and no v1 "
                              "%s hierarchy is mounted" % (point, v2, " ".join(have) or "none",
                                                           controller))
        return None, "no cgroup v1 %s hierarchy and no cgroup v2 is mounted" % controller

    def probe(self):
        """Find the disk and the hierarchies; returns self."""
        self.device, dev_why = block_device(self.docroot, self.sys_root)
        root_why = None if os.geteuid() == 0 else \
            "making cgroups needs root (the bench runs as uid %d)" % os.geteuid()
        self.disk_why = dev_why or root_why
        self.memory_why = "no memory limit asked for (--cache-limit none)" \
            if self.mem_limit is None else root_why
        if self.disk_why is None:
            version, where = self._parent("blkio")
            if version is None:
                self.disk_why = where
            else:
                self._disk_parent = (version, where)
        if self.memory_why is None:
            version, where = self._parent("memory")
            if version is None:
                self.memory_why = where
            else:
                self._memory_parent = (version, where)
        return self

    @property
    def can_throttle(self):
        return self.disk_why is None

    # -- making them ----------------------------------------------------------------

    def _mkdir(self, version, parent, controllers):
        if version == 2:  # a v2 child gets a controller only if its parent passes it on
            have = read_file(os.path.join(parent, "cgroup.subtree_control")).split()
            for c in controllers:
                if c not in have:
                    _write(os.path.join(parent, "cgroup.subtree_control"), "+" + c)
        path = os.path.join(parent, self.name)
        os.makedirs(path, exist_ok=True)
        return path

    def make(self):
        """Create the cgroups; a failure becomes disk_why / memory_why."""
        if self.disk_why is None:
            version, parent = self._disk_parent
            try:
                self.disk = (version, self._mkdir(version, parent, ["io"]))
                self.set_disk_iops(None)
            except OSError as e:
                self.disk, self.disk_why = None, "cannot make the disk cgroup under %s: %s" \
                    % (parent, e)
        if self.memory_why is None:
            version, parent = self._memory_parent
            try:
                self.memory = (version, self._mkdir(version, parent, ["memory"]))
                _write(os.path.join(self.memory[1], "memory.limit_in_bytes" if version == 1
                                    else "memory.max"), str(self.mem_limit))
            except OSError as e:
                self.memory, self.memory_why = None, "cannot make the memory cgroup under " \
                    "%s: %s" % (parent, e)
        return self

    def set_disk_iops(self, iops):
        """Limit reads on the disk to iops per second (None: unthrottled)."""
        if self.disk is None:
            if iops is not None:
                raise OSError("the disk cannot be throttled: %s" % self.disk_why)
            return
        version, path = self.disk
        if version == 1:
            _write(os.path.join(path, "blkio.throttle.read_iops_device"),
                   "%s %d" % (self.device, iops or 0))
        else:
            _write(os.path.join(path, "io.max"),
                   "%s riops=%s" % (self.device, iops if iops else "max"))
        self.iops = iops

    def wrap(self, argv):
        """argv, started inside the cgroups: a shell writes its pid into each
        cgroup.procs, then execs argv (same pid), so nothing runs outside."""
        files = [f for f in (self._procs(self.disk), self._procs(self.memory)) if f]
        if not files:
            return list(argv)
        script = ('n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 126; shift; '
                  'n=$((n - 1)); done; exec "$@"')
        return ["/bin/sh", "-c", script, "sh", str(len(files))] + files + list(argv)

    @staticmethod
    def _procs(cg):
        return os.path.join(cg[1], "cgroup.procs") if cg else None

    # -- reading and removing -----------------------------------------------------------

    def disk_counts(self):
        """(read I/Os, bytes read) on the disk by the cgroup so far, or None."""
        if self.disk is None:
            return None
        version, path = self.disk
        if version == 1:
            ios = _v1_reads(read_file(os.path.join(path, "blkio.throttle.io_serviced"), None),
                            self.device)
            nbytes = _v1_reads(read_file(os.path.join(path, "blkio.throttle.io_service_bytes"),
                                         None), self.device)
            return None if ios is None or nbytes is None else (ios, nbytes)
        return _v2_reads(read_file(os.path.join(path, "io.stat"), None), self.device)

    def remove(self, timeout=5.0):
        """rmdir the cgroups once their processes are gone; returns what is left."""
        left = []
        for cg in (self.disk, self.memory):
            if cg is None:
                continue
            deadline = time.monotonic() + timeout
            while True:
                try:
                    os.rmdir(cg[1])
                    break
                except FileNotFoundError:
                    break
                except OSError as e:
                    if time.monotonic() > deadline:
                        left.append("%s (%s)" % (cg[1], e.strerror))
                        break
                    time.sleep(0.05)
        self.disk = self.memory = None
        return left

    def describe(self):
        """What results.json records about the setup."""
        return {
            "device": self.device,
            "disk_cgroup": None if self.disk is None else
            {"version": self.disk[0], "path": self.disk[1]},
            "disk_unavailable": self.disk_why,
            "memory_cgroup": None if self.memory is None else
            {"version": self.memory[0], "path": self.memory[1]},
            "memory_limit_bytes": self.mem_limit if self.memory else None,
            "memory_unavailable": self.memory_why,
        }


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


def _v1_reads(text, device):
    """The 'MAJ:MIN Read N' line of a v1 blkio.throttle file (0 if absent;
    None if the file could not be read)."""
    if text is None:
        return None
    for line in text.splitlines():
        f = line.split()
        if len(f) == 3 and f[0] == device and f[1] == "Read":
            return int(f[2])
    return 0


def _v2_reads(text, device):
    """(rios, rbytes) of the device in a v2 io.stat (zeros when absent; None
    if the file could not be read)."""
    if text is None:
        return None
    for line in text.splitlines():
        f = line.split()
        if f and f[0] == device:
            kv = dict(x.split("=", 1) for x in f[1:] if "=" in x)
            return int(kv.get("rios", 0)), int(kv.get("rbytes", 0))
    return 0, 0
