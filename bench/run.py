#!/usr/bin/env python3
"""Strom's benchmark driver (run it through bench/run.sh, which builds everything first).

It measures this machine's limits (loopback TCP with iperf3, sequential writes with an
fdatasync after each one with fio), starts Strom on fresh data directories, runs every
scenario of the performance budget with the librdkafka load generator (bench/loadgen),
samples the broker's CPU time from /proc around each one, and writes a report: every Strom
figure next to the limit that bounds it, measured in the same run, their ratio, the target
and whether it is met. Absolute figures drift between runs on shared machines; the ratios
are what runs are compared by.

Nothing here is pass/fail: a missed target is reported, not raised. The exit code is
non-zero only when a scenario could not run at all (that is what CI's smoke run checks).
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
OUT = BENCH / "out"

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB

# Scenario sizes. Full mode is the budget's own; smoke mode keeps every scenario to a few
# seconds and a few MB so CI proves the suite works without measuring anything.
MODES = {
    "full": dict(
        iperf_s=5,
        fio_small=("64k", "512M"),
        fio_large=("1M", "2G"),
        page_cache_bytes=2 * GIB,
        produce_s=15,
        small_produce_s=15,
        e2e_rates_mbps=[5, 10, 20, 40, 80, 160, 0],
        e2e_s=12,
        e2e_warmup_s=2,
        empty_starts=10,
        bulk_bytes=10 * GIB,
        bulk_partitions=100,
        many_topics=99,
        many_partitions=100,
        restarts=3,
        crash_produce_s=8,
        crash_kill_after_s=4,
        crash_timeout_ms=3000,
        metadata_repeat=30,
    ),
    "smoke": dict(
        iperf_s=1,
        fio_small=("64k", "32M"),
        fio_large=("1M", "64M"),
        page_cache_bytes=64 * MIB,
        produce_s=2,
        small_produce_s=2,
        e2e_rates_mbps=[5, 20],
        e2e_s=3,
        e2e_warmup_s=1,
        empty_starts=3,
        bulk_bytes=32 * MIB,
        bulk_partitions=10,
        many_topics=9,
        many_partitions=10,
        restarts=2,
        crash_produce_s=2,
        crash_kill_after_s=1,
        crash_timeout_ms=1000,
        metadata_repeat=5,
    ),
}

# The budget (from the benchmark issue). Each entry: key, description, target text, and
# a predicate over the measured figure or ratio.
IDLE_SECONDS = 1.0  # how long a fresh broker idles before its resident memory is read


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class ScenarioError(Exception):
    pass


# --- machine description and limits ------------------------------------------------------


def sh(*argv, timeout=60):
    try:
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def top_processes(n=6):
    out = sh("ps", "-eo", "pcpu,rss,comm", "--sort=-pcpu")
    return out.splitlines()[: n + 1]


def describe_machine(data_dir):
    info = {}
    with open("/proc/cpuinfo") as f:
        models = [l.split(":", 1)[1].strip() for l in f if l.startswith("model name")]
    info["cpu"] = models[0] if models else platform.processor()
    info["cores"] = os.cpu_count()
    with open("/proc/meminfo") as f:
        mem = {l.split(":")[0]: l.split(":")[1].strip() for l in f}
    info["memory"] = f"{int(mem['MemTotal'].split()[0]) / 1024 / 1024:.1f} GiB"
    info["memory_available_at_start"] = (
        f"{int(mem['MemAvailable'].split()[0]) / 1024 / 1024:.1f} GiB"
    )
    info["kernel"] = platform.release()
    osr = {}
    if Path("/etc/os-release").exists():
        for l in Path("/etc/os-release").read_text().splitlines():
            if "=" in l:
                k, v = l.split("=", 1)
                osr[k] = v.strip('"')
    info["os"] = osr.get("PRETTY_NAME", platform.platform())
    src, fstype = (sh("findmnt", "-no", "SOURCE,FSTYPE", "-T", str(data_dir)).split() + ["?", "?"])[:2]
    dev = os.path.basename(src)
    rot = Path(f"/sys/block/{dev}/queue/rotational")
    sched = Path(f"/sys/block/{dev}/queue/scheduler")
    usage = shutil.disk_usage(data_dir)
    info["disk"] = (
        f"{src} ({fstype}), {usage.total / GIB:.0f} GiB, {usage.free / GIB:.0f} GiB free; "
        f"rotational={rot.read_text().strip() if rot.exists() else '?'}, "
        f"scheduler={sched.read_text().strip() if sched.exists() else '?'}"
    )
    virt = sh("systemd-detect-virt") or (
        "virtual machine (hypervisor flag in /proc/cpuinfo)"
        if "hypervisor" in Path("/proc/cpuinfo").read_text()
        else "unknown"
    )
    if Path("/sys/module/page_reporting").exists() or Path("/sys/bus/virtio/drivers/virtio_balloon").exists():
        virt += (
            "; virtio_balloon"
            + (" with free page reporting (guest memory freed is handed back to the host, and"
               " touching it again costs a host fault)" if Path("/sys/module/page_reporting").exists() else "")
        )
    info["virtualization"] = virt
    info["clock_ticks_per_s"] = os.sysconf("SC_CLK_TCK")
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    info["open files limit (soft / hard)"] = f"{soft} / {hard}"
    return info


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure_iperf(seconds):
    """Loopback TCP bandwidth, one stream: the consumer reads over one connection."""
    port = free_port()
    srv = subprocess.Popen(
        ["iperf3", "-s", "-1", "-B", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for attempt in range(20):
            time.sleep(0.2)
            r = subprocess.run(
                ["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", str(seconds), "-J"],
                capture_output=True,
                text=True,
                timeout=seconds + 30,
            )
            if r.returncode == 0:
                j = json.loads(r.stdout)
                recv = j["end"]["sum_received"]
                gb = recv["bytes"] / 1e9
                cpu = j["end"].get("cpu_utilization_percent", {})
                # iperf3 reports each side's CPU as a share of one core over the test: the
                # kernel's own cost of moving a GB through loopback TCP, a floor under the
                # broker's CPU per GB fetched.
                per_gb = lambda pct: round(pct / 100 * recv["seconds"] / gb, 3) if gb else None
                return {
                    "mb_per_s": round(recv["bits_per_second"] / 8 / 1e6, 1),
                    "seconds": seconds,
                    "streams": 1,
                    "sender_cpu_s_per_gb": per_gb(cpu.get("host_total", 0)),
                    "receiver_cpu_s_per_gb": per_gb(cpu.get("remote_total", 0)),
                }
        raise ScenarioError(f"iperf3 client failed: {r.stderr.strip() or r.stdout[-300:]}")
    finally:
        srv.kill()
        srv.wait()


def measure_fio(directory, bs, size):
    """Sequential buffered writes of `bs` with an fdatasync after each, in the data
    directory's file system: the pattern of a broker that syncs every produce batch."""
    name = "strom-bench-fdatasync"
    r = subprocess.run(
        [
            "fio", f"--name={name}", f"--directory={directory}", "--rw=write",
            f"--bs={bs}", f"--size={size}", "--fdatasync=1", "--ioengine=sync",
            "--output-format=json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    for f in Path(directory).glob(f"{name}*"):
        f.unlink()
    if r.returncode != 0:
        raise ScenarioError(f"fio failed: {r.stderr.strip()[-500:]}")
    # fio may print notes before the JSON document.
    j = json.loads(r.stdout[r.stdout.index("{"):])
    job = j["jobs"][0]
    sync = job.get("sync", {}).get("lat_ns", {}).get("percentile", {})
    pct = lambda q: round(sync.get(q, 0) / 1e3, 1)
    gb = job["write"]["io_bytes"] / 1e9
    cpu_s = (job["usr_cpu"] + job["sys_cpu"]) / 100 * job["job_runtime"] / 1e3
    return {
        "bs": bs,
        "size": size,
        "mb_per_s": round(job["write"]["bw_bytes"] / 1e6, 1),
        # What the kernel charges a process for this write pattern (copy into the page
        # cache, writeback, fdatasync): the floor under the broker's CPU per GB produced.
        "cpu_s_per_gb": round(cpu_s / gb, 3) if gb else None,
        "writes_per_s": round(job["write"]["iops"]),
        "fdatasync_p50_us": pct("50.000000"),
        "fdatasync_p99_us": pct("99.000000"),
        "fdatasync_p999_us": pct("99.900000"),
    }


def measure_page_cache(directory, size):
    """What the kernel charges to copy data into the page cache, without any fsync, in two
    cases: pages the guest has not touched lately (a growing log's case), and pages just
    freed by deleting a file of the same size. On a VM whose balloon reports free memory to
    the host, the first case includes a host fault per page; the difference is the cost of
    the machine, not of the program writing."""
    import resource

    buf = b"\x5a" * MIB

    def write(path):
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            for _ in range(size // MIB):
                os.write(fd, buf)
        finally:
            os.close(fd)
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (r1.ru_stime - r0.ru_stime) + (r1.ru_utime - r0.ru_utime)
        return round(cpu / (size / 1e9), 3)

    a, b = Path(directory) / "strom-bench-pc-a", Path(directory) / "strom-bench-pc-b"
    # Free page reporting hands memory back to the host 2 s after it is freed: wait that
    # out, so the first write really lands on memory the guest has not touched lately.
    time.sleep(3)
    try:
        fresh = write(a)
        a.unlink()
        recycled = write(b)
    finally:
        a.unlink(missing_ok=True)
        b.unlink(missing_ok=True)
    return {"size": size, "fresh_cpu_s_per_gb": fresh, "recycled_cpu_s_per_gb": recycled}


# --- the broker -----------------------------------------------------------------------------


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def nofile_limit(pid, hard=False):
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                return int(line.split()[4 if hard else 3])
    return None


def raise_nofile():
    """Runs in the broker's child process: soft open-file limit up to the hard one, as an
    operator would (Kafka's documentation asks for 100,000 or more)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Broker:
    """One strom process on a data directory, started and timed the way a user would see
    it: from spawn until the port accepts connections and the broker has logged ready."""

    def __init__(self, run, name, data_dir, overrides=None):
        self.run = run
        self.name = name
        self.data_dir = Path(data_dir)
        self.overrides = overrides or {}
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.proc = None
        self.starts = 0

    def start(self, timeout=300):
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            str(self.run.strom), "serve", "--data-dir", str(self.data_dir),
            "--override", f"listeners=PLAINTEXT://{self.addr}",
            "--override", "admin.http.listener=",
        ]
        for k, v in {"num.partitions": "4", **self.overrides}.items():
            argv += ["--override", f"{k}={v}"]
        self.starts += 1
        logf = open(self.run.logs / f"broker-{self.name}-{self.starts}.log", "w")
        ready = threading.Event()
        seen = {}

        def pump(stream, t0):
            # Copies the broker's log to a file and notes when (and how fast, by its own
            # clock) it said it was ready.
            for line in stream:
                logf.write(line)
                if "strom broker ready" in line and not ready.is_set():
                    seen["ready_line_ms"] = (time.perf_counter() - t0) * 1e3
                    for key in ("startup_ms", "recovery_ms", "partitions"):
                        m = re.search(rf"\b{key}=(\d+)", line)
                        if m:
                            seen[key] = int(m.group(1))
                    ready.set()
            logf.close()

        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            preexec_fn=raise_nofile,
        )
        self.run.live.add(self.proc)
        threading.Thread(target=pump, args=(self.proc.stderr, t0), daemon=True).start()
        # Poll connect() every millisecond: a refused connect returns at once, so the
        # resolution is about 1 ms.
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                connect_ms = (time.perf_counter() - t0) * 1e3
                break
            except OSError:
                if self.proc.poll() is not None:
                    raise ScenarioError(
                        f"broker {self.name} exited with {self.proc.returncode} during start-up; "
                        f"see {self.run.logs}/broker-{self.name}-{self.starts}.log"
                    )
                if time.perf_counter() - t0 > timeout:
                    raise ScenarioError(f"broker {self.name} not accepting after {timeout}s")
                time.sleep(0.001)
        if not ready.wait(timeout):
            raise ScenarioError(f"broker {self.name} accepted but never logged ready")
        return {
            "ready_ms": round(max(connect_ms, seen["ready_line_ms"]), 1),
            "connect_ms": round(connect_ms, 1),
            "logged_startup_ms": seen.get("startup_ms"),
            "logged_recovery_ms": seen.get("recovery_ms"),
            "partitions": seen.get("partitions"),
        }

    @property
    def pid(self):
        return self.proc.pid

    def rss_mb(self):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
        return None

    def stop(self, timeout=300):
        """SIGTERM (clean shutdown: flush, close, checkpoint); returns the seconds it took."""
        t0 = time.perf_counter()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise ScenarioError(f"broker {self.name} did not stop within {timeout}s")
        finally:
            self.run.live.discard(self.proc)
        if rc != 0:
            raise ScenarioError(f"broker {self.name} exited with {rc} on SIGTERM")
        return round(time.perf_counter() - t0, 3)

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.run.live.discard(self.proc)

    def remove_data(self):
        shutil.rmtree(self.data_dir, ignore_errors=True)


# --- the run --------------------------------------------------------------------------------


class Run:
    def __init__(self, opts):
        self.opts = opts
        self.mode = "smoke" if opts.smoke else "full"
        self.cfg = MODES[self.mode]
        self.strom = Path(opts.strom)
        self.loadgen = Path(opts.loadgen)
        self.live = set()
        self.results = {}
        self.errors = {}
        self.samples = []  # (when, scenario, loadavg, other processes' CPU share)
        # Per-run names: a smoke run (CI's, or scripts/test.sh on a developer's tree) may
        # start while a full run is going on in the same checkout.
        self.data_root = OUT / f"data-{self.mode}-{os.getpid()}"
        self.logs = OUT / f"logs-{self.mode}"

    # Every measurement goes through here: it runs one loadgen subcommand, and accounts the
    # machine's CPU over the same wall time, so what other processes took is on record.
    def loadgen_run(self, broker, cmd, *args, timeout=1800, background=False):
        argv = [str(self.loadgen), cmd, "--brokers", broker.addr] + [str(a) for a in args]
        log(" ".join(argv[1:]))
        if background:
            p = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
            self.live.add(p)
            return p
        r = subprocess.run(argv, stdout=subprocess.PIPE, text=True, timeout=timeout)
        if r.returncode != 0:
            raise ScenarioError(f"loadgen {cmd} exited with {r.returncode}")
        return json.loads(r.stdout.strip().splitlines()[-1])

    def scenario(self, name, fn):
        if self.opts.only and name not in self.opts.only:
            return
        log(f"=== {name}")
        self.samples.append((time.strftime("%H:%M:%S"), name, os.getloadavg()[0]))
        t0 = time.perf_counter()
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - one failed scenario must not stop the rest
            log(f"{name} FAILED: {e!r}")
            self.errors[name] = repr(e)
        log(f"=== {name} done in {time.perf_counter() - t0:.1f}s")

    def perf(self, broker, name):
        """With --perf, records the broker's stacks during a scenario (software cpu-clock
        events: this VM exposes no hardware counters)."""
        run = self

        class Ctx:
            def __enter__(self):
                self.p = None
                if run.opts.perf and shutil.which("perf"):
                    self.file = OUT / f"perf-{name}.data"
                    # DWARF unwinding: release builds keep no frame pointers, and the
                    # point is to see which broker function a kernel copy came from.
                    self.p = subprocess.Popen(
                        ["perf", "record", "-e", "cpu-clock", "-F", "499",
                         "--call-graph", "dwarf,16384", "-p", str(broker.pid),
                         "-o", str(self.file)],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    )
                    time.sleep(0.3)

            def __exit__(self, *exc):
                if self.p:
                    self.p.send_signal(signal.SIGINT)
                    self.p.wait(60)
                    with open(OUT / f"perf-{name}.txt", "w") as f:
                        f.write("# Attributed to Strom's functions (bench/tools/perf_attrib.py)\n")
                        f.flush()
                        script = subprocess.Popen(
                            ["perf", "script", "-i", str(self.file)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                        )
                        subprocess.run(
                            [sys.executable, str(BENCH / "tools/perf_attrib.py")],
                            stdin=script.stdout, stdout=f,
                        )
                        script.wait()
                        f.write("\n# Flat profile\n")
                        f.flush()
                        subprocess.run(
                            ["perf", "report", "-i", str(self.file), "--stdio",
                             "--no-children", "--percent-limit", "0.7", "-g", "none",
                             "--sort", "sym"],
                            stdout=f, stderr=subprocess.DEVNULL,
                        )
                    self.file.unlink(missing_ok=True)
                    log(f"profile: bench/out/perf-{name}.txt")

        return Ctx()

    # --- scenarios ---

    def limits(self, tag):
        d = self.data_root
        d.mkdir(parents=True, exist_ok=True)
        c = self.cfg
        lim = {
            "iperf3_loopback": measure_iperf(c["iperf_s"]),
            "fio_fdatasync_small": measure_fio(d, *c["fio_small"]),
            "fio_fdatasync_large": measure_fio(d, *c["fio_large"]),
            "page_cache_write": measure_page_cache(d, c["page_cache_bytes"]),
        }
        self.results[f"limits_{tag}"] = lim
        log(f"limits ({tag}): {json.dumps(lim)}")

    def main_broker_scenarios(self):
        c = self.cfg
        b = Broker(self, "main", self.data_root / "main")
        b.remove_data()
        b.start()
        res = self.results
        try:
            self.loadgen_run(b, "create-topics", "--prefix", "s1", "--partitions", 4)
            with self.perf(b, "produce-1k-acks-all"):
                res["produce_1k"] = self.loadgen_run(
                    b, "produce", "--topic", "s1", "--partitions", 4, "--size", 1024,
                    "--acks", "all", "--linger-ms", 5, "--duration-s", c["produce_s"],
                    "--broker-pid", b.pid,
                )
            self.loadgen_run(b, "create-topics", "--prefix", "s2", "--partitions", 4)
            with self.perf(b, "produce-100b-acks-1"):
                res["produce_100b"] = self.loadgen_run(
                    b, "produce", "--topic", "s2", "--partitions", 4, "--size", 100,
                    "--acks", 1, "--linger-ms", 100, "--batch-messages", 10000,
                    "--batch-bytes", 4 * MIB, "--duration-s", c["small_produce_s"],
                    "--broker-pid", b.pid,
                )
            # The log written by the first scenario is still in the page cache: warm.
            with self.perf(b, "consume-1k"):
                res["consume_1k"] = self.loadgen_run(
                    b, "consume", "--topic", "s1", "--partitions", 4, "--broker-pid", b.pid
                )
            self.loadgen_run(b, "create-topics", "--prefix", "e2e", "--partitions", 4)
            curve = []
            for rate in c["e2e_rates_mbps"]:
                with self.perf(b, f"e2e-{rate or 'max'}"):
                    r = self.loadgen_run(
                        b, "e2e", "--topic", "e2e", "--partitions", 4, "--size", 1024,
                        "--rate-mbps", rate, "--duration-s", c["e2e_s"],
                        "--warmup-s", c["e2e_warmup_s"], "--acks", "all", "--linger-ms", 0,
                        "--broker-pid", b.pid,
                    )
                curve.append(r)
                log(f"e2e {rate or 'max'} MB/s: achieved {r['mb_per_s']} MB/s, p50 {r['p50_ms']} "
                    f"p99 {r['p99_ms']} p99.9 {r['p999_ms']} max {r['max_ms']} ms")
            res["e2e_curve"] = curve
            res["main_broker_rss_mb_after"] = b.rss_mb()
        finally:
            res["main_broker_shutdown_s"] = b.stop()
            b.remove_data()

    def empty_startup(self):
        runs = []
        for i in range(self.cfg["empty_starts"]):
            b = Broker(self, "empty", self.data_root / f"empty-{i}")
            b.remove_data()
            try:
                s = b.start()
                time.sleep(IDLE_SECONDS)
                s["idle_rss_mb"] = b.rss_mb()
                runs.append(s)
            finally:
                b.stop()
                b.remove_data()
        self.results["startup_empty"] = {
            "runs": runs,
            "ready_ms_median": round(statistics.median(r["ready_ms"] for r in runs), 1),
            "ready_ms_max": max(r["ready_ms"] for r in runs),
            "idle_rss_mb_median": statistics.median(r["idle_rss_mb"] for r in runs),
            "idle_rss_mb_max": max(r["idle_rss_mb"] for r in runs),
        }

    def bulk_scenarios(self):
        """10 GB across 100 partitions: crash recovery; then 9,900 more (empty) partitions:
        Metadata, memory and start-up with 10,000 partitions and 10 GB."""
        c = self.cfg
        res = self.results
        parts = c["bulk_partitions"]
        d = self.data_root / "bulk"
        # Loading phase only: no fsync per batch (Kafka's own default), so the 10 GB is
        # written at the disk's buffered speed. Measurements below restart with defaults.
        loader = Broker(self, "bulk-load", d, {"log.flush.interval.messages": "9223372036854775807"})
        loader.remove_data()
        loader.start()
        try:
            fds0 = fd_count(loader.pid)
            self.loadgen_run(loader, "create-topics", "--prefix", "bulk", "--partitions", parts)
            time.sleep(0.2)
            # Open files per partition: with the descriptor limit, it bounds how many
            # partitions one broker can host on this machine.
            res["fds_per_partition"] = round((fd_count(loader.pid) - fds0) / parts, 2)
            res["bulk_load"] = self.loadgen_run(
                loader, "produce", "--topic", "bulk", "--partitions", parts, "--size", 1024,
                "--bytes", c["bulk_bytes"], "--acks", 1, "--linger-ms", 20, "--producers", 2,
                "--batch-bytes", 1 * MIB, "--broker-pid", loader.pid,
            )
        finally:
            loader.stop()
        res["bulk_data_bytes"] = sum(f.stat().st_size for f in d.rglob("*") if f.is_file())

        b = Broker(self, "bulk", d)
        try:
            res["startup_bulk_clean"] = b.start()
            # Crash: kill -9 under an acks=all producer, then restart and check that every
            # acknowledged offset is there with the acknowledged content.
            acked_file = self.data_root / "acked.json"
            acked_file.unlink(missing_ok=True)
            p = self.loadgen_run(
                b, "produce", "--topic", "bulk", "--partitions", parts, "--size", 1024,
                "--acks", "all", "--linger-ms", 5, "--duration-s", c["crash_produce_s"],
                "--timeout-ms", c["crash_timeout_ms"], "--acked-file", acked_file,
                background=True,
            )
            time.sleep(c["crash_kill_after_s"])
            rss_before_kill = b.rss_mb()
            b.kill9()
            log("broker killed with SIGKILL under load")
            out, _ = p.communicate(timeout=c["crash_produce_s"] + c["crash_timeout_ms"] / 1000 + 120)
            self.live.discard(p)
            crash_produce = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
            # Restart only after the producer has given up, so nothing is acknowledged by
            # the new process behind the check's back.
            rec = b.start()
            verify = self.loadgen_run(b, "verify", "--acked-file", acked_file, "--partitions", parts)
            res["recovery"] = {
                "start": rec,
                "producer": crash_produce,
                "verify": verify,
                "rss_mb_before_kill": rss_before_kill,
            }
            log(f"recovery: ready in {rec['ready_ms']} ms; verify ok={verify['ok']}")

            # 10,000 partitions: the bulk topic's 100 plus many topics of 100, as far as the
            # broker's open-file limit allows. Going past it would leave topics in the
            # metadata whose logs cannot open (the broker answers KafkaStorageError), and
            # spoil the restarts measured next; the shortfall is reported instead.
            limit = nofile_limit(b.pid)
            fpp = res.get("fds_per_partition") or 3
            room = int(limit * 0.9) - fd_count(b.pid)
            topics = min(c["many_topics"], max(0, int(room / fpp) // c["many_partitions"]))
            wanted = c["bulk_partitions"] + c["many_topics"] * c["many_partitions"]
            if topics < c["many_topics"]:
                res["partition_limit"] = {
                    "wanted_partitions": wanted,
                    "fds_per_partition": fpp,
                    "fds_needed": round(wanted * fpp),
                    "nofile_limit": limit,
                    "nofile_hard_limit": nofile_limit(b.pid, hard=True),
                    "partitions_created": c["bulk_partitions"] + topics * c["many_partitions"],
                }
                log(f"only {topics} of {c['many_topics']} topics fit the open-file limit: "
                    f"{res['partition_limit']}")
            res["create_many"] = self.loadgen_run(
                b, "create-topics", "--prefix", "many", "--count", topics,
                "--partitions", c["many_partitions"], "--per-request", 10,
            )
            res["fds_after_create"] = fd_count(b.pid)
            time.sleep(IDLE_SECONDS)
            res["many_rss_mb_after_create"] = b.rss_mb()
            with self.perf(b, "metadata"):
                res["metadata"] = self.loadgen_run(b, "metadata", "--repeat", c["metadata_repeat"])
            restarts = []
            for _ in range(c["restarts"]):
                stop_s = b.stop()
                s = b.start()
                s["shutdown_s_before"] = stop_s
                time.sleep(IDLE_SECONDS)
                s["idle_rss_mb"] = b.rss_mb()
                restarts.append(s)
            res["startup_many"] = {
                "runs": restarts,
                "ready_ms_median": round(statistics.median(r["ready_ms"] for r in restarts), 1),
                "ready_ms_max": max(r["ready_ms"] for r in restarts),
                "idle_rss_mb_max": max(r["idle_rss_mb"] for r in restarts),
            }
            res["metadata_after_restart"] = self.loadgen_run(
                b, "metadata", "--repeat", c["metadata_repeat"]
            )
            res["many_rss_mb_after_metadata"] = b.rss_mb()
        finally:
            if b.proc and b.proc.poll() is None:
                b.stop()
            b.remove_data()

    def cleanup(self):
        for p in list(self.live):
            if p.poll() is None:
                p.kill()
                p.wait()


# --- the budget -----------------------------------------------------------------------------


# One line per target on why it is missed when it is (the evidence is in analysis.md), matched
# by the start of the scenario's name in the budget table.
MISS_REASONS = [
    ("Produce 1 KiB", "CPU-bound, not disk-bound: librdkafka (2–2.7 s of CPU per GB) and the "
     "broker (1.1–2.7 s/GB, mostly the kernel's page-cache copy) share 2 cores, while fio "
     "needs only the kernel; the ratio also swings with fio's own figure on a shared disk."),
    ("Produce 100 B", "user time is 20–35 ns/message; the rest is the kernel's per-byte cost "
     "(copy into the page cache, made dear by the VM's free page reporting, fdatasync, socket "
     "reads)."),
    ("Consume 1 KiB", "the librdkafka consumer needs 0.75–1.3 s of CPU per GB and, on a quiet "
     "machine, a full core at ~770 MB/s: one consumer cannot reach 0.4× here; the broker's "
     "sendfile still costs the kernel's TCP work on the same cores."),
    ("Broker CPU per GB produced", "Strom's own code is 0.2–0.3 s/GB; the kernel's copy into "
     "the page cache dominates, several times dearer here than on bare metal because the "
     "VM returns freed memory to the host (free page reporting)."),
    ("Broker CPU per GB fetched", "record bytes go out with sendfile (user time ~0.01 s/GB); "
     "what remains is the kernel's loopback TCP work, receive side included (softirq runs in "
     "the sender's context), which iperf3 pays too."),
    ("End-to-end latency", "linger 0 makes ~10,000 produce requests/s, each appended and "
     "fdatasynced through a spawn_blocking round trip: the broker spends 0.7–1 core on it and "
     "requests queue, far above the disk's ~0.2 ms fdatasync."),
    ("Idle resident memory", "see the analysis."),
    ("Start-up to listening + ready, empty", "about seven fsyncs and fdatasyncs (format, metadata log, "
     "broker registration): fine at 0.2 ms each, over budget when the shared disk's fdatasync "
     "latency rises to milliseconds (limits table)."),
    ("Start-up to listening + ready,", "each partition costs a directory listing, two "
     "checkpoint reads, index loads and an open (on 8 threads)."),
    ("Recovery", "see the analysis."),
    ("10,000 partitions", "one open file per segment (indexes are written without a held "
     "descriptor) against this sandbox's 20,000-descriptor limit, which cannot be raised here."),
    ("Metadata", "see the analysis."),
    ("Resident memory", "see the analysis."),
]


def size_text(n):
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def budget_rows(res, cfg):
    """One row per target: (scenario, figure, limit, ratio, target, met, note)."""
    rows = []
    L = {}
    for tag in ("start", "end"):
        if f"limits_{tag}" in res:
            L[tag] = res[f"limits_{tag}"]

    def best(key, field):
        # Of the two measurements (start and end of the run) the higher: the stricter limit.
        vals = [L[t][key][field] for t in L]
        return max(vals) if vals else None

    def least(key, field):
        # A cost floor: the lower of the two measurements, the stricter choice.
        vals = [L[t][key].get(field) for t in L if L[t][key].get(field) is not None]
        return min(vals) if vals else None

    fio_bw = best("fio_fdatasync_large", "mb_per_s")
    fsync_p99 = least("fio_fdatasync_small", "fdatasync_p99_us")
    tcp_bw = best("iperf3_loopback", "mb_per_s")

    fio_bs = cfg["fio_large"][0]

    def row(name, figure, limit, ratio, target, met, note=""):
        rows.append(dict(scenario=name, figure=figure, limit=limit, ratio=ratio,
                         target=target, met=met, note=note))

    p = res.get("produce_1k")
    if p and fio_bw:
        ratio = p["mb_per_s"] / fio_bw
        row("Produce 1 KiB, acks=all, 4 partitions, 1 producer, linger 5 ms",
            f"{p['mb_per_s']:.0f} MB/s ({p['msgs_per_s']:.0f} msg/s)",
            f"{fio_bw:.0f} MB/s fio seq. write + fdatasync, bs={fio_bs}",
            f"{ratio:.2f}×", "≥ 1.0× fdatasync write bw", ratio >= 1.0)
    p = res.get("produce_100b")
    if p and p.get("broker_cpu_s") is not None:
        ns = p["broker_cpu_s"] / p["messages"] * 1e9
        row("Produce 100 B, acks=1, batches of 10k: broker CPU per message",
            f"{ns:.0f} ns/msg ({p['msgs_per_s']:.0f} msg/s, batches of "
            f"{p['librdkafka'].get('avg_batch_messages', '?') if p.get('librdkafka') else '?'} msgs)",
            "— (absolute)", f"{ns / 100:.2f}× budget", "≤ 100 ns/msg", ns <= 100)
    cns = res.get("consume_1k")
    if cns and tcp_bw:
        ratio = cns["mb_per_s"] / tcp_bw
        row("Consume 1 KiB from a warm log, 1 consumer",
            f"{cns['mb_per_s']:.0f} MB/s ({cns['msgs_per_s']:.0f} msg/s)",
            f"{tcp_bw:.0f} MB/s iperf3 loopback TCP, 1 stream",
            f"{ratio:.2f}×", "≥ 0.4× loopback TCP bw", ratio >= 0.4)
    def split(p, gb):
        if p.get("broker_user_s") is None:
            return ""
        return f" ({p['broker_user_s'] / gb:.2f} user + {p['broker_sys_s'] / gb:.2f} kernel)"

    p = res.get("produce_1k")
    fio_cpu = least("fio_fdatasync_large", "cpu_s_per_gb")
    if p and p.get("broker_cpu_s") is not None:
        gb = p["bytes"] / 1e9
        spg = p["broker_cpu_s"] / gb
        row("Broker CPU per GB produced (1 KiB, acks=all)", f"{spg:.2f} s/GB{split(p, gb)}",
            f"kernel alone: fio write+fdatasync bs={fio_bs} costs {fio_cpu:.2f} s/GB" if fio_cpu else "—",
            f"{spg / 0.3:.2f}× budget", "≤ 0.3 s/GB", spg <= 0.3)
    tcp_cpu = least("iperf3_loopback", "sender_cpu_s_per_gb")
    if cns and cns.get("broker_cpu_s") is not None and cns["bytes"]:
        gb = cns["bytes"] / 1e9
        spg = cns["broker_cpu_s"] / gb
        row("Broker CPU per GB fetched (1 KiB)", f"{spg:.2f} s/GB{split(cns, gb)}",
            f"kernel alone: sending 1 GB over loopback TCP costs {tcp_cpu:.2f} s (iperf3)" if tcp_cpu else "—",
            f"{spg / 0.1:.2f}× budget", "≤ 0.1 s/GB", spg <= 0.1)
    e = [r for r in res.get("e2e_curve", []) if r["target_mb_per_s"] == 20]
    if e:
        e = e[0]
        limit = f"fdatasync p99 {fsync_p99:.0f} µs (fio bs=64k)" if fsync_p99 else "—"
        ratio = f"{e['p99_ms'] * 1000 / fsync_p99:.1f}× fdatasync p99" if fsync_p99 else "—"
        row("End-to-end latency, 1 KiB at 20 MB/s, acks=all (p99)",
            f"p99 {e['p99_ms']:.2f} ms (p50 {e['p50_ms']:.2f}, p99.9 {e['p999_ms']:.2f}, "
            f"max {e['max_ms']:.1f}; achieved {e['mb_per_s']:.1f} MB/s)",
            limit, ratio, "p99 ≤ 2 ms", e["p99_ms"] <= 2.0)
    s = res.get("startup_empty")
    if s:
        row("Idle resident memory after start-up (empty)", f"{s['idle_rss_mb_max']:.1f} MB",
            "— (absolute)", f"{s['idle_rss_mb_max'] / 15:.2f}× budget", "≤ 15 MB",
            s["idle_rss_mb_max"] <= 15)
        row("Start-up to listening + ready, empty",
            f"{s['ready_ms_median']:.1f} ms median of {len(s['runs'])} (max {s['ready_ms_max']:.1f})",
            "— (absolute)", f"{s['ready_ms_median'] / 20:.2f}× budget", "≤ 20 ms",
            s["ready_ms_median"] <= 20)
    s = res.get("startup_many")
    if s:
        parts = s["runs"][0].get("partitions") or 0
        wanted = cfg["bulk_partitions"] + cfg["many_topics"] * cfg["many_partitions"]
        scale = wanted / parts if res.get("partition_limit") and parts else 1.0
        t = s["ready_ms_median"]
        row(f"Start-up to listening + ready, {parts:,} partitions, {size_text(res.get('bulk_data_bytes', 0))}",
            f"{t:.0f} ms median of {len(s['runs'])} (max {s['ready_ms_max']:.0f})"
            + (f"; ≈ {t * scale:.0f} ms scaled linearly to {wanted:,} partitions" if scale > 1.01 else ""),
            "— (absolute)", f"{t * scale / 500:.2f}× budget", "≤ 500 ms", t * scale <= 500)
    r = res.get("recovery")
    if r:
        v = r["verify"]
        ok = v["ok"]
        t = r["start"]["ready_ms"]
        row(f"Recovery after kill -9, {size_text(res.get('bulk_data_bytes', 0))} across {cfg['bulk_partitions']} partitions",
            f"{t:.0f} ms to ready; {v['acked_messages']} acked, "
            f"{'none lost' if ok else 'LOSS: ' + str(len(v['lost'])) + ' partitions, ' + str(len(v['problems'])) + ' content problems'}",
            "— (absolute)", f"{t / 1000:.2f}× budget", "≤ 1 s, no acked message lost",
            t <= 1000 and ok)
    pl = res.get("partition_limit")
    wanted = cfg["bulk_partitions"] + cfg["many_topics"] * cfg["many_partitions"]
    if pl:
        row(f"{wanted:,} partitions on one broker",
            f"not reached: {pl['partitions_created']:,} of {wanted:,} created; {wanted:,} need "
            f"~{pl['fds_needed']:,} open files at {pl['fds_per_partition']} per partition",
            f"open-file limit {pl['nofile_limit']:,} (hard limit {pl['nofile_hard_limit']:,}; "
            f"raising it needs CAP_SYS_RESOURCE)",
            f"{pl['fds_needed'] / pl['nofile_limit']:.2f}× the fd limit",
            f"host {wanted:,} partitions", False)
    m = res.get("metadata")
    if m:
        n = m["partitions"]
        # Below the wanted count (fd limit), the figures are also scaled linearly to it;
        # the verdict then rests on the scaled value and says so.
        scale = wanted / n if pl and n else 1.0
        note = lambda v, unit: (f"; ≈ {v * scale:.1f} {unit} scaled linearly to {wanted:,}"
                                if scale > 1.01 else "")
        worst = max(m["median_ms"], res.get("metadata_after_restart", m)["median_ms"])
        row(f"Metadata for all {n:,} partitions ({m['topics']} topics)",
            f"{worst:.1f} ms median of {m['samples']}{note(worst, 'ms')}", "— (absolute)",
            f"{worst * scale / 50:.2f}× budget", "≤ 50 ms for 10,000", worst * scale <= 50)
        rss = max(filter(None, [res.get("many_rss_mb_after_create"),
                                res.get("many_rss_mb_after_metadata"),
                                res.get("startup_many", {}).get("idle_rss_mb_max")]))
        base = res.get("startup_empty", {}).get("idle_rss_mb_median", 0)
        rss_scaled = base + (rss - base) * scale
        row(f"Resident memory with {n:,} partitions",
            f"{rss:.0f} MB" + (f"; ≈ {rss_scaled:.0f} MB scaled linearly to {wanted:,}" if scale > 1.01 else ""),
            "— (absolute)", f"{rss_scaled / 300:.2f}× budget", "≤ 300 MB for 10,000",
            rss_scaled <= 300)
    return rows


# --- report ---------------------------------------------------------------------------------


def plot(res, path, machine):
    curve = res.get("e2e_curve") or []
    if not curve:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # In offered-load order, unbounded last: past saturation the achieved rate can fall back,
    # and the line should show that hook rather than zigzag.
    pts = sorted(curve, key=lambda r: r["target_mb_per_s"] or float("inf"))
    x = [r["mb_per_s"] for r in pts]
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for key, label, style in (("p50_ms", "p50", "o-"), ("p99_ms", "p99", "s-"),
                              ("p999_ms", "p99.9", "^-"), ("max_ms", "max", "x:")):
        ax.plot(x, [r[key] for r in pts], style, label=label)
    ax.axhline(2.0, color="red", linestyle="--", linewidth=1)
    ax.axvline(20, color="red", linestyle=":", linewidth=0.8)
    ax.plot([20], [2.0], "r*", markersize=12, label="budget: p99 ≤ 2 ms at 20 MB/s")
    for r in pts:
        label = f"{r['target_mb_per_s']:g}" if r["target_mb_per_s"] else "unbounded"
        ax.annotate(label, (r["mb_per_s"], r["p99_ms"]), textcoords="offset points",
                    xytext=(3, -10), fontsize=7, color="gray")
    ax.set_xscale("log")
    ax.set_yscale("log")
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda v, _: f"{v:g}")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(plain)
        axis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    ax.set_xlabel("achieved throughput, MB/s (log; gray labels: offered MB/s)")
    ax.set_ylabel("produce → consume latency, ms (log)")
    ax.set_title("Strom end-to-end latency vs throughput\n1 KiB messages, acks=all, 4 partitions, "
                 "linger 0, librdkafka", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.text(0.01, 0.01, f"{machine['cores']} cores {machine['cpu']}, {machine['memory']}, "
             f"kernel {machine['kernel']}; {datetime.date.today()}", fontsize=7, color="gray")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path)
    plt.close(fig)
    return True


def md_table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def write_report(run, machine, rows, path, plot_name, plotted, started, finished):
    res = run.results
    cfg = run.cfg
    L = [(t, res[f"limits_{t}"]) for t in ("start", "end") if f"limits_{t}" in res]
    met = sum(1 for r in rows if r["met"])
    commit = sh("git", "-C", str(ROOT), "rev-parse", "--short", "HEAD")
    dirty = sh("git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no", "crates")
    lines = [
        "# Strom benchmark results",
        "",
        f"Mode: **{run.mode}** (`./bench/run.sh{' --smoke' if run.mode == 'smoke' else ''}`), "
        f"{started:%Y-%m-%d %H:%M} – {finished:%H:%M} UTC, Strom commit `{commit}`"
        f"{' with uncommitted broker changes' if dirty else ''}. "
        f"Every figure is from this one run; limits were measured in the same run "
        f"(at its start and its end; the higher of the two is used, the stricter choice).",
        "",
        "These are measurements, not tests: nothing here fails a build. On these shared "
        "machines absolute figures drift from run to run; compare runs by the ratios.",
        "",
        f"**{met} of {len(rows)} targets met.**" + (
            f" Scenarios that could not run: {', '.join(run.errors)}." if run.errors else ""),
        "",
        "## The budget",
        "",
        md_table(
            ["Scenario", "Strom", "Limit on this machine (same run)", "Ratio", "Target", "Met?"],
            [[r["scenario"], r["figure"], r["limit"], r["ratio"], r["target"],
              "**yes**" if r["met"] else "**no**"] for r in rows],
        ),
        "",
        "Ratios: for a throughput, Strom's figure ÷ the machine limit that bounds it; for an "
        "absolute budget (CPU, memory, time), the figure ÷ the budget (≤ 1 is within it).",
        "",
    ]
    missed = [r for r in rows if not r["met"]]
    if missed:
        lines += ["**Missed in this run, and why** (evidence and fixes: *Analysis of the missed "
                  "targets* below):", ""]
        for r in missed:
            reason = next((why for prefix, why in MISS_REASONS
                           if r["scenario"].startswith(prefix)), "see the analysis.")
            lines.append(f"- *{r['scenario']}*: {reason}")
        lines.append("")
    lines += [
        f"![latency vs throughput]({plot_name})" if plotted else "(no plot: the e2e scenario did not run)",
        "",
        "## The machine",
        "",
        md_table(["", ""], [[k, v] for k, v in machine.items()]),
        "",
        f"Builds before the run: broker {run.opts.build_strom_s} s, load generator "
        f"{run.opts.build_loadgen_s} s (`cargo build --release`; a cold load-generator build "
        f"includes compiling librdkafka from source).",
        "",
        "### What else was running",
        "",
        "Client (load generator) and broker share the machine's cores; so does anything else "
        "on the machine (other engineers' compilers). Load average when each scenario started, "
        "and the share of the machine other processes took during each measurement "
        "(machine busy time from /proc/stat minus broker and client CPU, in cores) is in the "
        "'other processes' columns of the scenario details below.",
        "",
        md_table(["time", "scenario", "1-min load average"],
                 [[t, n, f"{l:.2f}"] for t, n, l in run.samples]),
        "",
        "Busiest processes at the start of the run:",
        "",
        "```",
        *machine_top_start,
        "```",
        "",
        "## Machine limits",
        "",
        md_table(
            ["measured", "loopback TCP (iperf3, 1 stream)",
             f"fio write+fdatasync bs={cfg['fio_small'][0]}",
             f"fio write+fdatasync bs={cfg['fio_large'][0]}",
             "fdatasync latency p50 / p99 / p99.9 (bs=64k)",
             f"kernel CPU per GB: fio bs={cfg['fio_large'][0]} / TCP send / TCP receive",
             "CPU per GB copied into the page cache: untouched / just-freed memory"],
            [[t, f"{l['iperf3_loopback']['mb_per_s']} MB/s",
              f"{l['fio_fdatasync_small']['mb_per_s']} MB/s ({l['fio_fdatasync_small']['writes_per_s']} writes/s)",
              f"{l['fio_fdatasync_large']['mb_per_s']} MB/s ({l['fio_fdatasync_large']['writes_per_s']} writes/s)",
              f"{l['fio_fdatasync_small']['fdatasync_p50_us']} / {l['fio_fdatasync_small']['fdatasync_p99_us']} / "
              f"{l['fio_fdatasync_small']['fdatasync_p999_us']} µs",
              f"{l['fio_fdatasync_large'].get('cpu_s_per_gb')} / "
              f"{l['iperf3_loopback'].get('sender_cpu_s_per_gb')} / "
              f"{l['iperf3_loopback'].get('receiver_cpu_s_per_gb')} s",
              f"{l['page_cache_write']['fresh_cpu_s_per_gb']} / {l['page_cache_write']['recycled_cpu_s_per_gb']} s"
              if "page_cache_write" in l else ""] for t, l in L],
        ),
        "",
        "Why these limits. *Produce*: by default Strom fdatasyncs before it acknowledges, and "
        "it syncs each partition's batch separately; librdkafka's statistics (below) show the "
        "batches it sends in the produce scenario are about 1 MB (its `batch.size` cap), so the "
        "bound is sequential writes of 1 MiB with an fdatasync after each, in the file system "
        "of the data directory (`fio --rw=write --bs=1M --fdatasync=1 --ioengine=sync`). The "
        "64 KiB run is shown for smaller batches, and its fdatasync latency is the floor under "
        "an acks=all round trip. *Consume*: one consumer reads over one TCP connection, so the "
        "bound is one iperf3 stream over loopback.",
        "",
    ]
    lines += scenario_details(res)
    analysis = BENCH / "analysis.md"
    if analysis.exists():
        lines += ["", analysis.read_text().rstrip(), ""]
    if run.errors:
        lines += ["", "## Scenarios that could not run", ""]
        lines += [f"- `{k}`: {v}" for k, v in run.errors.items()]
    lines += [
        "",
        "## Raw figures",
        "",
        "<details><summary>Everything the load generator and the driver reported (JSON)</summary>",
        "",
        "```json",
        json.dumps(res, indent=1, sort_keys=True),
        "```",
        "</details>",
        "",
    ]
    path.write_text("\n".join(lines))


machine_top_start = []


def scenario_details(res):
    out = ["## Scenario details", ""]
    rows = []
    for key, label in (("produce_1k", "produce 1 KiB acks=all linger 5 ms"),
                       ("produce_100b", "produce 100 B acks=1 batches of 10k"),
                       ("consume_1k", "consume 1 KiB (warm)"),
                       ("bulk_load", "bulk load (no fsync, 2 producers, acks=1)")):
        p = res.get(key)
        if not p:
            continue
        gb = p["bytes"] / 1e9
        lk = p.get("librdkafka") or {}
        rows.append([
            label, f"{p['messages']:,}", f"{gb:.2f}", f"{p['elapsed_s']:.1f}",
            f"{p['msgs_per_s']:,.0f}", f"{p['mb_per_s']:.0f}",
            f"{p.get('broker_cpu_s')} ({p.get('broker_user_s')} user + {p.get('broker_sys_s')} sys)",
            f"{p.get('client_cpu_s')}",
            f"{p['broker_user_s'] / gb:.2f} + {p['broker_sys_s'] / gb:.2f}" if p.get("broker_user_s") is not None and gb else "",
            f"{p['broker_cpu_s'] / p['messages'] * 1e9:.0f}" if p.get("broker_cpu_s") is not None else "",
            f"{lk.get('avg_batch_bytes', '')} B / {lk.get('avg_batch_messages', '')} msgs" if lk else "",
            f"{p.get('other_cores', '')}",
        ])
    out += [md_table(["scenario", "messages", "GB", "s", "msg/s", "MB/s", "broker CPU s",
                      "client CPU s", "broker s/GB user + sys", "broker ns/msg", "avg batch (librdkafka)",
                      "other processes (cores)"], rows), ""]
    curve = res.get("e2e_curve")
    if curve:
        out += ["### End-to-end latency (1 KiB, acks=all, linger 0, 4 partitions; "
                "produce → consume in one process)", ""]
        out += [md_table(
            ["offered MB/s", "achieved MB/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms",
             "max ms", "broker CPU (cores)", "client CPU (cores)", "other processes (cores)"],
            [[r["target_mb_per_s"] or "unbounded", r["mb_per_s"], r["p50_ms"], r["p90_ms"],
              r["p99_ms"], r["p999_ms"], r["max_ms"],
              round(r["broker_cpu_s"] / r["measured_s"], 2) if r.get("broker_cpu_s") is not None else "",
              round(r["client_cpu_s"] / r["measured_s"], 2) if r.get("client_cpu_s") is not None else "",
              r.get("other_cores", "")]
             for r in curve]), ""]
    rec = res.get("recovery")
    if rec:
        v, pr, st = rec["verify"], rec["producer"], rec["start"]
        out += ["### Crash recovery", "",
                f"An acks=all producer wrote 1 KiB messages round-robin to the "
                f"{v['partitions_with_acks']} partitions of the loaded topic; the broker was "
                f"killed with SIGKILL mid-stream ({pr.get('messages', '?')} messages acknowledged, "
                f"{pr.get('failed', '?')} failed with the broker gone). Restarted on the same "
                f"data: ready after {st['ready_ms']} ms (its own log: start-up "
                f"{st['logged_startup_ms']} ms, of which recovery {st['logged_recovery_ms']} ms). "
                f"Check: every partition's high watermark is past the last offset acknowledged to "
                f"the producer ({len(v['lost'])} partitions short), and the message at that offset "
                f"is the acknowledged one, byte for byte ({v['content_ok']} of "
                f"{v['content_checked']} intact). Problems: {v['problems'] or 'none'}.", ""]
    for key, label in (("startup_empty", "empty data directory"),
                       ("startup_many", "all partitions with the bulk data (clean restarts)")):
        s = res.get(key)
        if s:
            out += [f"### Start-up, {label}", "",
                    md_table(["ready ms (spawn → accepting and logged ready)", "connect ms",
                              "broker's own startup_ms", "recovery_ms", "idle RSS MB"],
                             [[r["ready_ms"], r["connect_ms"], r["logged_startup_ms"],
                               r["logged_recovery_ms"], r.get("idle_rss_mb")] for r in s["runs"]]),
                    ""]
    if res.get("startup_bulk_clean"):
        s = res["startup_bulk_clean"]
        out += [f"Start-up after the bulk load (100 partitions, clean shutdown): {s['ready_ms']} ms.", ""]
    if res.get("create_many"):
        cm = res["create_many"]
        out += [f"Creating {cm['topics']} topics × {cm['partitions_each']} partitions took "
                f"{cm['elapsed_s']} s (CreateTopics, 10 topics per request).", ""]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--strom", default=str(ROOT / "target/release/strom"))
    ap.add_argument("--loadgen", default=str(BENCH / "loadgen/target/release/strom-loadgen"))
    ap.add_argument("--build-strom-s", default="?")
    ap.add_argument("--build-loadgen-s", default="?")
    ap.add_argument("--only", type=lambda s: set(s.split(",")), default=None,
                    help="comma-separated scenarios: limits,main,empty,bulk")
    ap.add_argument("--perf", action="store_true",
                    help="record broker profiles with perf into bench/out/perf-*.txt")
    ap.add_argument("--report-only", action="store_true",
                    help="rewrite the report and plot from bench/out/run-full.json (with "
                         "--smoke: run-smoke.json) without running anything (after editing "
                         "bench/analysis.md)")
    opts = ap.parse_args()
    if opts.report_only:
        return report_only(opts)
    run = Run(opts)
    run.logs.mkdir(parents=True, exist_ok=True)
    started = datetime.datetime.now(datetime.timezone.utc)
    run.data_root.mkdir(parents=True, exist_ok=True)
    machine = describe_machine(run.data_root)
    machine["load average at start (1/5/15 min)"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    machine_top_start[:] = top_processes()
    log(f"mode {run.mode}; machine: {json.dumps(machine)}")

    def on_signal(signum, frame):
        run.cleanup()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        run.scenario("limits", lambda: run.limits("start"))
        run.scenario("empty", run.empty_startup)
        run.scenario("main", run.main_broker_scenarios)
        run.scenario("bulk", run.bulk_scenarios)
        run.scenario("limits", lambda: run.limits("end"))
    finally:
        run.cleanup()
        shutil.rmtree(run.data_root, ignore_errors=True)
    machine["load average at end (1/5/15 min)"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    finished = datetime.datetime.now(datetime.timezone.utc)

    (OUT / f"run-{run.mode}.json").write_text(json.dumps({
        "mode": run.mode, "results": run.results, "errors": run.errors,
        "samples": run.samples, "machine": machine, "top": machine_top_start,
        "started": started.isoformat(), "finished": finished.isoformat(),
        "build_strom_s": opts.build_strom_s, "build_loadgen_s": opts.build_loadgen_s,
    }, indent=1))
    return finish(run, machine, started, finished)


def report_only(opts):
    saved = json.loads((OUT / f"run-{'smoke' if opts.smoke else 'full'}.json").read_text())
    opts.smoke = saved["mode"] == "smoke"
    opts.build_strom_s, opts.build_loadgen_s = saved["build_strom_s"], saved["build_loadgen_s"]
    run = Run(opts)
    run.results, run.errors = saved["results"], saved["errors"]
    run.samples = [tuple(x) for x in saved["samples"]]
    machine_top_start[:] = saved["top"]
    parse = datetime.datetime.fromisoformat
    return finish(run, saved["machine"], parse(saved["started"]), parse(saved["finished"]))


def finish(run, machine, started, finished):
    rows = budget_rows(run.results, run.cfg)
    if run.mode == "full":
        report, png = BENCH / "RESULTS.md", BENCH / "latency-throughput.png"
    else:
        report, png = OUT / "RESULTS.md", OUT / "latency-throughput.png"
    try:
        plotted = plot(run.results, png, machine)
    except Exception as e:  # noqa: BLE001 - a missing plot must not lose the figures
        log(f"plot failed: {e!r}")
        run.errors["plot"] = repr(e)
        plotted = False
    write_report(run, machine, rows, report, png.name, plotted, started, finished)

    width = max((len(r["scenario"]) for r in rows), default=10)
    if run.mode == "smoke":
        # A smoke run's sizes are far too small for its figures to mean anything: it proves the
        # scenarios run. Said up front, so "NO" rows below are not read as a failed check.
        print("\nINFORMATIONAL (smoke mode): the figures below come from tiny scenarios and are not "
              "compared with anything; this step fails only if a scenario could not run.")
    print(f"\n{'scenario':<{width}}  {'Strom':<40} {'ratio':<22} {'target':<30} met")
    for r in rows:
        print(f"{r['scenario']:<{width}}  {r['figure'][:40]:<40} {r['ratio']:<22} "
              f"{r['target']:<30} {'yes' if r['met'] else 'NO'}")
    print(f"\n{sum(r['met'] for r in rows)} of {len(rows)} targets met; report: "
          f"{report.relative_to(ROOT)}; plot: {png.relative_to(ROOT) if plotted else 'none'}")
    if run.errors:
        print(f"scenarios that could not run: {run.errors}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
