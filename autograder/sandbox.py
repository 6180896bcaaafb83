"""One sandbox per submission: the process the student's code runs in.

The worker (`autograder.worker`) runs under bubblewrap (`bwrap`, Debian
package `bubblewrap`) with

- its own PID, network, IPC and UTS namespaces: no network at all (not even
  loopback to the grader), no view of other processes, killed with its parent;
- a read-only view of the machine, with the course folder, the solutions, the
  tests and the repository's history, `/tmp` and the home folder's contents
  hidden (empty; the interpreter and the course's code put back where they
  live there), and one writable folder of its own (`/tmp/work`);
- resource limits: a control group capping its processes and memory where the
  machine allows one (checked by `limits_in_force`), and rlimits on address
  space, file size, open files, CPU time and core dumps everywhere;
- its output read by a thread of the grader that keeps the first
  `OUTPUT_KEEP_BYTES` and kills the process past `OUTPUT_MAX_BYTES`.
"""
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

from autograder import REPO

MEMORY_BYTES = 3 * 2**30        # resident memory (control group)
ADDRESS_SPACE_BYTES = 16 * 2**30  # virtual memory (rlimit; torch reserves a lot)
MAX_PROCESSES = 64              # threads included
FILE_BYTES = 64 * 2**20
CPU_SECONDS = 900
OUTPUT_KEEP_BYTES = 64 * 2**10
OUTPUT_MAX_BYTES = 16 * 2**20

BWRAP = shutil.which("bwrap")


class SandboxUnavailable(RuntimeError):
    pass


def _cgroup_root():
    """(version, {controller: folder}) of a writable cgroup hierarchy, or None."""
    base = Path("/sys/fs/cgroup")
    if (base / "cgroup.controllers").exists() and os.access(base, os.W_OK):
        return 2, {"pids": base, "memory": base}
    v1 = {c: base / c for c in ("pids", "memory")}
    if all(d.is_dir() and os.access(d, os.W_OK) for d in v1.values()):
        return 1, v1
    return None


def limits_in_force():
    """What the sandbox can enforce on this machine, for the docs and the log."""
    cg = _cgroup_root()
    return {"bwrap": bool(BWRAP), "cgroup": f"v{cg[0]}" if cg else None}


class _ControlGroup:
    def __init__(self):
        found = _cgroup_root()
        self.dirs = []
        if not found:
            return
        version, roots = found
        name = f"edgpt-grader-{uuid.uuid4().hex[:12]}"
        limits = {"pids": ("pids.max", MAX_PROCESSES),
                  "memory": ("memory.max" if version == 2 else "memory.limit_in_bytes", MEMORY_BYTES)}
        try:
            for controller, (knob, value) in limits.items():
                d = roots[controller] / name
                d.mkdir(exist_ok=True)
                self.dirs.append(d)
                (d / knob).write_text(str(value))
        except OSError:
            self.remove()
            self.dirs = []

    def enter(self):
        """In the child, before exec: join every group."""
        for d in self.dirs:
            with open(d / "cgroup.procs", "w") as f:
                f.write(str(os.getpid()))

    def remove(self):
        for d in self.dirs:
            try:
                for pid in (d / "cgroup.procs").read_text().split():
                    os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except OSError:
                    threading.Event().wait(0.02)


def _mounts(course_root, workdir):
    """bwrap's file system arguments: the machine read-only, an empty /tmp and
    home, then what the worker needs put back, then the secrets hidden again."""
    tmp, home = Path("/tmp"), Path.home().resolve()
    # The interpreter, the venv and the course's code (where autograder.worker lives).
    keep = sorted({Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(), REPO})
    args = ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    for k in keep:
        if tmp in k.parents and not any(other in k.parents for other in keep):
            args += ["--ro-bind", str(k), str(k)]  # a clone or venv under /tmp
    if home.is_dir() and home != Path("/"):
        for child in home.iterdir():
            if child.is_dir() and not any(k == child or child in k.parents for k in keep):
                args += ["--tmpfs", str(child)]
    for secret in (Path(course_root).resolve(), REPO / "solutions", REPO / "tests", REPO / ".git"):
        if secret.is_dir() and not any(secret == k or secret in k.parents for k in keep if k != REPO):
            args += ["--tmpfs", str(secret)]
    return args + ["--bind", str(workdir), "/tmp/work", "--chdir", "/tmp/work"]


class Sandbox:
    """A started worker: `fd_to`/`fd_from` are the grader's ends of its channel."""

    def __init__(self, course_root, workdir):
        if not BWRAP:
            raise SandboxUnavailable(
                "bubblewrap (bwrap) is not installed: apt-get install bubblewrap")
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        to_worker_r, self.fd_to = os.pipe()
        self.fd_from, from_worker_w = os.pipe()
        cmd = [BWRAP, "--unshare-all", "--die-with-parent", "--new-session", *_mounts(course_root, workdir),
               "--setenv", "HOME", "/tmp/work", "--setenv", "OMP_NUM_THREADS", "1",
               "--setenv", "CUDA_VISIBLE_DEVICES", "",
               sys.executable, "-I", "-m", "autograder.worker", str(to_worker_r), str(from_worker_w)]
        self.cgroup = _ControlGroup()
        self.output = bytearray()
        self.output_total = 0
        self.killed_for = None
        self.process = subprocess.Popen(
            cmd, pass_fds=(to_worker_r, from_worker_w), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=self._limit, env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
        os.close(to_worker_r)
        os.close(from_worker_w)
        self.reader = threading.Thread(target=self._read_output, daemon=True)
        self.reader.start()

    def _limit(self):
        self.cgroup.enter()
        for kind, value in ((resource.RLIMIT_AS, ADDRESS_SPACE_BYTES), (resource.RLIMIT_FSIZE, FILE_BYTES),
                            (resource.RLIMIT_NOFILE, 256), (resource.RLIMIT_CORE, 0),
                            (resource.RLIMIT_CPU, CPU_SECONDS)):
            resource.setrlimit(kind, (value, value))

    def _read_output(self):
        pipe = self.process.stdout
        while True:
            chunk = pipe.read1(1 << 16)
            if not chunk:
                return
            self.output_total += len(chunk)
            room = OUTPUT_KEEP_BYTES - len(self.output)
            if room > 0:
                self.output += chunk[:room]
            if self.output_total > OUTPUT_MAX_BYTES and not self.killed_for:
                self.killed_for = f"printed more than {OUTPUT_MAX_BYTES // 2**20} MB"
                self.kill()

    def kill(self):
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def death_reason(self):
        try:
            code = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()
            code = self.process.wait()
        if self.killed_for:
            return f"the kernel was stopped: it {self.killed_for}"
        if code < 0 or code >= 128:
            sig = -code if code < 0 else code - 128
            name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
            hint = {"SIGSEGV": " (a segmentation fault)", "SIGKILL": " (a memory or process limit, or a kill)",
                    "SIGXCPU": " (the CPU time limit)", "SIGXFSZ": " (the file size limit)"}.get(name, "")
            return f"the kernel died: signal {name}{hint}"
        return f"the kernel died: the process exited with status {code}"

    def close(self):
        for fd in (self.fd_to, self.fd_from):
            try:
                os.close(fd)
            except OSError:
                pass
        self.kill()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self.reader.join(timeout=5)
        self.cgroup.remove()
