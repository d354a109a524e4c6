#!/usr/bin/python3
"""Unit tests of the cold-cache parts of the bench harness, without a server:

    cgroups.py    the cgroup hierarchies read from /proc/self/{mountinfo,cgroup},
                  v1 and v2, on a fake cgroup and sysfs tree: where the cgroups
                  go, the limits written, the wrapper, the disk counters, the
                  disk of a partition, what is said when nothing can be done
    coldcache.py  the root's layout and manifest (reused while every file
                  matches, written again when one changed), the path lists
                  (Zipf: the first file about 1/H_N of the requests), the
                  window's per-second figures, the eviction tried again and
                  a window that stays warm degrading its round
    counters.py   delay accounting's bogus values left out, the D-state
                  sampler's sums
    plan.py       the profile, its flags, the skip when the disk cannot be
                  throttled, the dry run's time (at most 15 minutes)
    cell.py       loop stalls from a model's counters

    /usr/bin/python3 tests/bench/test_coldcache_units.py
"""

import os
import shutil
import sys
import tempfile
import unittest
from unittest import mock

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "bench"))
sys.path.insert(0, os.path.join(REPO, "tests", "lib"))
import testmain  # noqa: E402
from harness import cell, cgroups, cli, coldcache, counters, plan, variants  # noqa: E402
from harness.util import KiB, MiB, UsageError  # noqa: E402

SERVE_HELP = """\
common flags:
  --port N                   TCP port
  --workers N                workers

threaded: a blocking thread per connection
  --pool N                   a fixed pool

epoll: an epoll event loop per thread
  --helpers N                N helper threads per loop read file ranges not in memory

libuv: event loops on libuv
  --fs-pool                  read file bodies on libuv's thread pool
"""
BINARY = plan.Binary("/bin/c10k", ["threaded", "epoll", "libuv"], ["threaded"],
                     variants.parse_serve_help(SERVE_HELP))


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


class FakeMachine:
    """A /proc/self, a cgroup root and a /sys under one temporary directory."""

    def __init__(self, tmp, v1=True, v2_controllers="", partition=False):
        self.tmp = tmp
        self.proc = os.path.join(tmp, "proc")
        self.cg = os.path.join(tmp, "cgroup")
        self.sys = os.path.join(tmp, "sys")
        mounts, mine = [], []
        if v1:
            mounts += ["30 25 0:26 / %s/blkio rw - cgroup cgroup rw,blkio" % self.cg,
                       "31 25 0:27 / %s/memory rw - cgroup cgroup rw,memory" % self.cg]
            mine += ["7:blkio:/", "4:memory:/outer/job"]
            os.makedirs(os.path.join(self.cg, "blkio"))
            os.makedirs(os.path.join(self.cg, "memory", "outer", "job"))
        mounts.append("32 25 0:28 / %s/unified rw - cgroup2 cgroup2 rw" % self.cg)
        mine.append("0::/svc")
        write(os.path.join(self.cg, "unified", "svc", "cgroup.controllers"), v2_controllers)
        write(os.path.join(self.cg, "unified", "svc", "cgroup.subtree_control"), "")
        write(os.path.join(self.proc, "mountinfo"), "\n".join(mounts) + "\n")
        write(os.path.join(self.proc, "cgroup"), "\n".join(mine) + "\n")
        # the docroot's device, as /sys/dev/block shows it
        self.root = os.path.join(tmp, "root")
        os.makedirs(self.root)
        st = os.stat(self.root)
        node = os.path.join(self.sys, "dev", "block", "%d:%d" % (os.major(st.st_dev),
                                                                  os.minor(st.st_dev)))
        if partition:
            disk = os.path.join(self.sys, "devices", "vdb")
            os.makedirs(os.path.join(disk, "vdb1"))
            write(os.path.join(disk, "dev"), "254:16\n")
            write(os.path.join(disk, "vdb1", "partition"), "1\n")
            os.makedirs(os.path.dirname(node))
            os.symlink(os.path.join(disk, "vdb1"), node)
        else:
            os.makedirs(node)

    def cgroups(self, limit=256 * MiB):
        return cgroups.Cgroups("c10k-bench-1", self.root, limit, cg_root=self.cg,
                               proc=self.proc, sys_root=self.sys)


@unittest.skipIf(os.major(os.stat(tempfile.gettempdir()).st_dev) == 0,
                 "the temporary directory has no block device (tmpfs)")
class CgroupsTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp()
        self.root_uid = mock.patch("os.geteuid", return_value=0)
        self.root_uid.start()

    def tearDown(self):
        self.root_uid.stop()
        shutil.rmtree(self.tmp)

    def test_v1_below_our_own_cgroups(self):
        m = FakeMachine(self.tmp)
        cg = m.cgroups().probe().make()
        self.assertIsNone(cg.disk_why)
        self.assertIsNone(cg.memory_why)
        self.assertEqual(cg.disk, (1, os.path.join(m.cg, "blkio", "c10k-bench-1")))
        # memory: below the cgroup the bench runs in, so its limits still apply
        mem = os.path.join(m.cg, "memory", "outer", "job", "c10k-bench-1")
        self.assertEqual(cg.memory, (1, mem))
        with open(os.path.join(mem, "memory.limit_in_bytes")) as f:
            self.assertEqual(f.read(), str(256 * MiB))
        cg.set_disk_iops(200)
        with open(os.path.join(cg.disk[1], "blkio.throttle.read_iops_device")) as f:
            self.assertEqual(f.read(), "%s 200" % cg.device)
        cg.set_disk_iops(None)
        with open(os.path.join(cg.disk[1], "blkio.throttle.read_iops_device")) as f:
            self.assertEqual(f.read(), "%s 0" % cg.device, "0 lifts the v1 limit")
        argv = cg.wrap(["c10k", "serve", "epoll"])
        self.assertEqual(argv[:2], ["/bin/sh", "-c"])
        self.assertEqual(argv[4:7], ["2", os.path.join(cg.disk[1], "cgroup.procs"),
                                     os.path.join(mem, "cgroup.procs")])
        self.assertEqual(argv[-3:], ["c10k", "serve", "epoll"])
        write(os.path.join(cg.disk[1], "blkio.throttle.io_serviced"),
              "%s Read 12\n%s Write 3\nTotal 15\n" % (cg.device, cg.device))
        write(os.path.join(cg.disk[1], "blkio.throttle.io_service_bytes"),
              "%s Read 786432\n%s Write 0\n" % (cg.device, cg.device))
        self.assertEqual(cg.disk_counts(), (12, 786432))
        d = cg.describe()
        self.assertEqual(d["disk_cgroup"], {"version": 1, "path": cg.disk[1]})
        self.assertEqual(d["memory_limit_bytes"], 256 * MiB)
        for path in (cg.disk[1], mem):  # rmdir works on these fake files' dirs
            for name in os.listdir(path):
                os.unlink(os.path.join(path, name))
        self.assertEqual(cg.remove(), [])
        self.assertFalse(os.path.exists(mem))

    def test_v2_io_max_and_memory_max(self):
        m = FakeMachine(self.tmp, v1=False, v2_controllers="cpu io memory pids")
        cg = m.cgroups().probe().make()
        parent = os.path.join(m.cg, "unified", "svc")
        self.assertEqual(cg.disk, (2, os.path.join(parent, "c10k-bench-1")))
        with open(os.path.join(parent, "cgroup.subtree_control")) as f:
            self.assertIn("+memory", f.read(), "the controller is passed on to the child")
        cg.set_disk_iops(5000)
        with open(os.path.join(cg.disk[1], "io.max")) as f:
            self.assertEqual(f.read(), "%s riops=5000" % cg.device)
        cg.set_disk_iops(None)
        with open(os.path.join(cg.disk[1], "io.max")) as f:
            self.assertEqual(f.read(), "%s riops=max" % cg.device)
        with open(os.path.join(cg.memory[1], "memory.max")) as f:
            self.assertEqual(f.read(), str(256 * MiB))
        write(os.path.join(cg.disk[1], "io.stat"),
              "%s rbytes=4096 wbytes=0 rios=1 wios=0\n" % cg.device)
        self.assertEqual(cg.disk_counts(), (1, 4096))

    def test_nothing_to_use_says_why(self):
        m = FakeMachine(self.tmp, v1=False, v2_controllers="cpu pids")
        cg = m.cgroups().probe()
        self.assertFalse(cg.can_throttle)
        self.assertIn("no io controller", cg.disk_why)
        self.assertIn("no memory controller", cg.memory_why)
        with self.assertRaises(OSError):
            cg.make().set_disk_iops(200)
        self.assertEqual(cg.wrap(["x"]), ["x"], "nothing to enter: the command as it is")

    def test_not_root(self):
        m = FakeMachine(self.tmp)
        with mock.patch("os.geteuid", return_value=1000):
            cg = m.cgroups().probe()
        self.assertIn("needs root", cg.disk_why)
        self.assertIn("needs root", cg.memory_why)

    def test_no_memory_limit_asked(self):
        cg = FakeMachine(self.tmp).cgroups(limit=None).probe().make()
        self.assertIsNotNone(cg.disk)
        self.assertIsNone(cg.memory)
        self.assertIn("--cache-limit none", cg.memory_why)

    def test_a_partition_is_throttled_on_its_disk(self):
        m = FakeMachine(self.tmp, partition=True)
        self.assertEqual(cgroups.block_device(m.root, m.sys), ("254:16", None))

    def test_no_block_device(self):
        with mock.patch("os.stat") as st:
            st.return_value = mock.Mock(st_dev=os.makedev(0, 44))
            dev, why = cgroups.block_device("/dev/shm")
        self.assertIsNone(dev)
        self.assertIn("without a block device", why)


class ColdRootTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp()

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def test_layout_scaled(self):
        self.assertEqual(coldcache.scaled_layout(coldcache.FULL_FILES), coldcache.LAYOUT)
        self.assertEqual(coldcache.scaled_layout(300), ((270, 64 * KiB), (27, 4 * KiB),
                                                        (3, MiB)))
        full = coldcache.ColdRoot(self.tmp)
        self.assertEqual(len(full.entries), 22200)
        self.assertEqual(full.bytes, 20000 * 64 * KiB + 2000 * 4 * KiB + 200 * MiB)
        self.assertEqual(full.entries[1001][0], "001/01001.bin")

    def test_written_once_then_reused_until_a_file_changes(self):
        log = open(os.devnull, "w")
        root = coldcache.ColdRoot(self.tmp, 30).ensure(log)
        self.assertTrue(root.generated)
        rel, size = root.entries[5]
        with open(os.path.join(root.dir, rel), "rb") as f:
            data = f.read()
        self.assertEqual(len(data), size)
        self.assertTrue(data.startswith(b"c10k cold file 00005, %d bytes\n" % size))
        again = coldcache.ColdRoot(self.tmp, 30)
        self.assertTrue(again.reusable())
        again.ensure(log)
        self.assertFalse(again.generated, "reused")
        self.assertEqual(again.digest(), root.digest())
        with open(os.path.join(root.dir, rel), "r+b") as f:  # same size, new content
            f.write(b"X")
        third = coldcache.ColdRoot(self.tmp, 30)
        self.assertFalse(third.reusable(), "a changed file is noticed (its mtime)")
        third.ensure(log)
        self.assertTrue(third.generated)
        self.assertEqual(third.digest(), root.digest(), "written again, the same content")
        sample = third.sample()
        self.assertEqual([s for _, s, _ in sample], [64 * KiB, 4 * KiB, MiB], "one of each size")
        log.close()

    def test_no_space(self):
        root = coldcache.ColdRoot(self.tmp)
        with mock.patch("os.statvfs") as sv:
            sv.return_value = mock.Mock(f_bavail=10, f_frsize=4096)
            with self.assertRaises(UsageError) as e:
                root.check_space()
        self.assertIn("needs 1521 MiB", str(e.exception))


class PathListTest(unittest.TestCase):
    FILES = [("%05d.bin" % i, 64 * KiB) for i in range(1000)]

    def test_zipf_first_file_gets_one_over_h(self):
        paths = coldcache.path_list(self.FILES, "zipf", 1.0, seed=7, n=50000)
        counts = {}
        for p in paths:
            counts[p] = counts.get(p, 0) + 1
        top = sorted(counts.values(), reverse=True)
        h = sum(1.0 / k for k in range(1, 1001))
        self.assertAlmostEqual(top[0] / 50000, 1 / h, delta=0.02)
        self.assertAlmostEqual(top[1] / top[0], 0.5, delta=0.1, msg="the second: half as often")
        self.assertEqual(paths, coldcache.path_list(self.FILES, "zipf", 1.0, seed=7, n=50000),
                         "the seed fixes the list")
        self.assertNotEqual(paths[:100], coldcache.path_list(self.FILES, "zipf", 1.0, 8,
                                                             n=50000)[:100])
        self.assertTrue(all(p.startswith("/") for p in paths))

    def test_uniform_spreads(self):
        paths = coldcache.path_list(self.FILES, "uniform", 1.0, seed=1, n=50000)
        counts = {}
        for p in paths:
            counts[p] = counts.get(p, 0) + 1
        self.assertLess(max(counts.values()), 100, "no file near Zipf's 13%")
        self.assertGreater(len(counts), 990)
        stats = coldcache.list_stats(paths, {"/" + r: s for r, s in self.FILES})
        self.assertEqual(stats["requests"], 50000)
        self.assertEqual(stats["distinct_bytes"], stats["distinct_files"] * 64 * KiB)


class CountersTest(unittest.TestCase):
    def test_delayacct_leaves_out_impossible_values(self):
        hz = counters.CLK_TCK
        start = {"t": 100.0, "delayacct": {1: ("c10k", 0), 2: ("c10k", 10)}}
        end = {"t": 102.0, "delayacct": {1: ("c10k", hz), 2: ("c10k", 10 + hz // 2),
                                         3: ("c10k-helper", 5000 * hz)}}  # born: uptime
        d = counters.delayacct_delta(start, end, None)
        self.assertAlmostEqual(d["delayacct_blkio_ms"], 1500.0)
        self.assertEqual(d["delayacct_dropped_threads"], 1)
        self.assertIsNone(counters.delayacct_delta(start, end, "off")["delayacct_blkio_ms"])

    def test_blocked_sampler_result(self):
        s = counters.BlockedSampler(os.getpid())
        s.blocked = {"c10k-helper": 1.5, "c10k": 0.25}
        s.samples = 200
        r = s.result()
        self.assertEqual(r["blkio_delay_ms"], 1750.0)
        self.assertEqual(r["blkio_delay_by_thread"], {"c10k": 250.0, "c10k-helper": 1500.0})
        self.assertEqual(counters._comm_class("iou-wrk-1234"), "iou-wrk")

    def test_blocked_sampler_sees_no_disk_wait_in_a_sleeper(self):
        s = counters.BlockedSampler(os.getpid())
        s.start()
        import time
        time.sleep(0.1)  # this process sleeps in S, not D
        s.finish()
        self.assertGreater(s.samples, 3)
        self.assertEqual(s.result()["blkio_delay_ms"], 0)

    def test_per_request_and_per_second(self):
        w = coldcache.ColdWindow.__new__(coldcache.ColdWindow)
        w.stats_ns = [10 ** 9, 3.5 * 10 ** 9]  # the stats files were written 2.5 s apart
        rep = {"requests": 100, "blkio_delay_span_s": 2.0, "io_read_bytes": 6553600,
               "blkio_delay_ms": 1500.0, "loop_stall_ms": 900.0}
        w.per_request(rep)
        self.assertEqual((rep["io_read_bytes_per_req"], rep["blkio_delay_ms_per_s"],
                          rep["loop_stall_span_s"], rep["loop_stall_ms_per_s"]),
                         (65536, 750.0, 2.5, 360.0), "stalls per second of their own span")
        w.stats_ns = [None, 3 * 10 ** 9]  # a stats file not read
        rep = {"requests": 0, "blkio_delay_span_s": 2.0, "io_read_bytes": 5, "blkio_delay_ms": None,
               "loop_stall_ms": 900.0}
        w.per_request(rep)
        self.assertIsNone(rep["io_read_bytes_per_req"])
        self.assertIsNone(rep["blkio_delay_ms_per_s"])
        self.assertIsNone(rep["loop_stall_ms_per_s"])

    def evict_with(self, fracs):
        """ColdWindow.evict when mincore says fracs, one per eviction."""
        w = coldcache.ColdWindow.__new__(coldcache.ColdWindow)
        w.files, w.sc = ["/x"], {"cold": {"disk_iops": 50}}
        w.setup = mock.Mock()
        w.setup.cgroups.memory = None
        waits = iter([0.3, coldcache.QUIET_MAX_S, 0.25])
        rep = {}
        with mock.patch.object(coldcache.pagecache, "evict") as ev, \
                mock.patch.object(coldcache.pagecache, "resident_frac", side_effect=fracs), \
                mock.patch.object(coldcache.os, "sync") as sync, \
                mock.patch.object(w, "quiesce", side_effect=lambda: next(waits)):
            w.evict(rep)
        return rep, ev.call_count, sync.call_count

    def test_eviction_tried_again_then_the_round_degraded(self):
        rep, evictions, syncs = self.evict_with([0.0])
        self.assertEqual((rep["resident_start_frac"], rep["evict_tries"], evictions, syncs),
                         (0.0, 1, 1, 0))
        self.assertNotIn("cold_degraded_by", rep)
        self.assertFalse(rep["quiesce_timed_out"])
        # reads in flight: synced, waited for (5 s, gave up), evicted again
        rep, evictions, syncs = self.evict_with([0.078, 0.005])
        self.assertEqual((rep["resident_start_frac"], rep["evict_tries"], evictions, syncs),
                         (0.005, 2, 2, 1))
        self.assertTrue(rep["quiesce_timed_out"])
        self.assertNotIn("cold_degraded_by", rep)
        rep, evictions, _ = self.evict_with([0.2, 0.1, 0.05])
        self.assertEqual((rep["evict_tries"], evictions), (coldcache.EVICT_TRIES, 3))
        self.assertIn("started warm: 5.0%", rep["cold_degraded_by"][0])
        self.assertAlmostEqual(rep["quiesce_s"], 0.3 + coldcache.QUIET_MAX_S + 0.25)

    def test_a_warm_window_degrades_the_round(self):
        rep = {"status": "ok", "errors_total": 0, "requests": 5, "conns_established": 10,
               "cold_degraded_by": ["the window started warm: 5.0%"]}
        sc = {"keepalive": True, "connections": 10}
        cell.CellRunner._judge(None, sc, rep, None)
        self.assertEqual(rep["status"], "degraded")
        self.assertEqual(rep["degraded_by"], ["the window started warm: 5.0%"])

    def test_loop_stalls_from_counters(self):
        self.assertEqual(cell.loop_stalls({"loop_stalls": 3, "loop_stall_us": 4500,
                                           "loop_iterations": 9}),
                         {"loop_stalls": 3, "loop_stall_ms": 4.5})
        self.assertEqual(cell.loop_stalls(None), {"loop_stalls": None, "loop_stall_ms": None})
        self.assertEqual(cell.loop_stalls({"user_switches": 5}),
                         {"loop_stalls": None, "loop_stall_ms": None})


def args_for(argv, out):
    return cli.parse_args(["--bin", "/bin/c10k", "--out", out] + argv)


class FakeSetup(coldcache.ColdSetup):
    """A ColdSetup whose cgroups say what the test wants."""
    disk_why = None
    memory_why = None

    def probe(self):
        self.cgroups.disk_why, self.cgroups.memory_why = self.disk_why, self.memory_why
        return self


class PlanTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp()

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def make(self, argv, disk_why=None, memory_why=None):
        FakeSetup.disk_why, FakeSetup.memory_why = disk_why, memory_why
        with mock.patch.object(coldcache, "ColdSetup", FakeSetup):
            return plan.from_args(args_for(argv, self.tmp), BINARY, ncpu=2)

    def test_profile(self):
        p = self.make(["--profile", "cold-cache", "--seed", "3"])
        self.assertEqual([s["cold"]["disk_iops"] for s in p.scenarios], [200, 5000])
        self.assertEqual([n for n in p.names if n != "ceiling"],
                         ["threaded", "epoll", "libuv", "epoll:helpers=4", "libuv:fs-pool",
                          "nginx"])
        if "ceiling" in p.names:  # it answers from memory: no cold cell
            self.assertFalse(any(p.serves("ceiling", sc) for sc in p.scenarios))
        sc = p.scenarios[0]
        self.assertEqual((sc["connections"], sc["keepalive"], sc["kind"]), (64, True, "closed"))
        self.assertEqual(sc["id"], "cold-zipf-iops200-64KiB-ka-c64")
        self.assertEqual(sc["label"], "cold cache, 200 IOPS disk, 64 conns")
        self.assertEqual(sc["cold"]["files"], 22200)
        self.assertEqual(p.rounds, 3)
        self.assertIs(p.cold.__class__, FakeSetup)

    def test_full_profile_fits_in_15_minutes(self):
        """10 servers (every model, coro included, the two answers, nginx) x 2
        disks x 3 rounds, at the worst estimate, with the root to write."""
        models = ["threaded", "prefork", "epoll", "libevent", "libuv", "uring", "coro"]
        binary = plan.Binary("/bin/c10k", models, ["threaded", "prefork"],
                             variants.parse_serve_help(SERVE_HELP))
        FakeSetup.disk_why = FakeSetup.memory_why = None
        with mock.patch.object(coldcache, "ColdSetup", FakeSetup):
            p = plan.from_args(args_for(["--profile", "cold-cache"], self.tmp), binary, ncpu=2)
        self.assertEqual(len([s for s in p.servers if s.name != "ceiling"]), 10)
        self.assertEqual(len(p.visits()), 60, "the ceiling has no cold cell")
        self.assertFalse(p.cold.root.reusable())
        self.assertLessEqual(p.estimate_s(worst=True), 15 * 60, plan.fmt_duration(
            p.estimate_s(worst=True)))
        text = plan.dry_run_text(p)
        self.assertIn("to evict the cold root and check it", text)
        self.assertIn("the cold root's first writing included", text)

    def test_flags(self):
        p = self.make(["--profile", "cold-cache", "--disk-iops", "50,unthrottled,50",
                       "--cache-limit", "none", "--cold-files", "300", "--dist", "uniform"])
        self.assertEqual([s["cold"]["disk_iops"] for s in p.scenarios], [50, None])
        self.assertEqual(p.scenarios[1]["label"], "cold cache, unthrottled disk, 64 conns")
        self.assertEqual(p.scenarios[0]["cold"]["dist"], "uniform")
        self.assertEqual(p.scenarios[0]["cold"]["files"], 300)
        self.assertIsNone(p.cold.cache_limit)
        for argv, want in ((["--disk-iops", "fast"], "not a number"),
                           (["--disk-iops", "0.5"], "not a number"),
                           (["--cache-limit", "1MiB"], "at least 16MiB"),
                           (["--cache-limit", "1GB"], "did you mean"),
                           (["--cold-files", "2"], "want 3 to")):
            with self.assertRaises(UsageError, msg=argv) as e:
                self.make(["--profile", "cold-cache"] + argv)
            self.assertIn(want, str(e.exception), argv)
        with self.assertRaises(UsageError) as e:
            self.make(["--disk-iops", "200"])
        self.assertIn("--disk-iops is for --profile cold-cache only", str(e.exception))

    def test_cannot_throttle_skips_visibly(self):
        p = self.make(["--profile", "cold-cache"], disk_why="making cgroups needs root",
                      memory_why="making cgroups needs root")
        self.assertEqual([s["cold"]["disk_iops"] for s in p.scenarios], [None])
        self.assertTrue(any(n.startswith("SKIP the throttled disk (200 IOPS, 5,000 IOPS): "
                                         "making cgroups needs root") for n in p.notes), p.notes)
        self.assertTrue(any("page cache is not limited" in n for n in p.notes), p.notes)
        self.assertIn("note: SKIP the throttled disk", plan.dry_run_text(p))

    def test_cache_limit_above_the_root_is_said(self):
        p = self.make(["--profile", "cold-cache", "--cold-files", "30"])
        self.assertTrue(any("is not below the root's" in n for n in p.notes), p.notes)


def main():
    return testmain.run("cold-cache units")


if __name__ == "__main__":
    sys.exit(main())
