"""Sandboxes for student code.

The worker (`autograder.worker`) runs under bubblewrap (`bwrap`, Debian
package `bubblewrap`) with

- its own PID, network, IPC and UTS namespaces: no network at all (not even
  loopback to the grader), no view of other processes, killed with its parent;
- a read-only view of the machine, with the course folder, the solutions, the
  tests and the repository's history, `/tmp` and the home folder's contents
  hidden (empty; the interpreter and the course's code put back where they
  live there); the only writable places are the sandbox's own `/tmp` and
  `/dev/shm`, in memory;
- resource limits: a control group capping its processes and memory where the
  machine allows one (checked by `limits_in_force`), and rlimits on address
  space, file size, open files, CPU time and core dumps everywhere;
- its output read by a thread of the grader that keeps the first
  `OUTPUT_KEEP_BYTES` and stops the worker past `OUTPUT_MAX_BYTES`.

Each grading process keeps one such sandbox, a *zygote* that has imported
torch, and forks a fresh child in it for every submission (`spawn`): its own
process tree and pipes, a wiped `/tmp`, nothing left of the previous child.
"""
import atexit
import os
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
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


def _mounts(course_root):
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
    return args + ["--chdir", "/tmp"]


class Zygote:
    """A sandboxed worker that has imported torch once and forks one child per
    submission (`spawn`).

    Importing torch takes about 2 s of CPU, most of what a submission cost.
    The zygote never runs student code: each child starts from its pristine
    state in a fresh `/tmp` (the zygote wipes it, and kills every process the
    previous child left behind, before the next one), with its own pipes to
    the grader. The zygote's control group limits the child's memory and
    processes; a child that times out or floods its output is stopped by
    killing the whole zygote, and the next submission gets a new one.
    """

    RECORD = 16  # bytes of each message on the control socket

    def __init__(self, course_root):
        if not BWRAP:
            raise SandboxUnavailable("bubblewrap (bwrap) is not installed: apt-get install bubblewrap")
        self.control, theirs = socket.socketpair()
        cmd = [BWRAP, "--unshare-all", "--die-with-parent", "--new-session", *_mounts(course_root),
               "--setenv", "HOME", "/tmp/work", "--setenv", "OMP_NUM_THREADS", "1",
               "--setenv", "CUDA_VISIBLE_DEVICES", "",
               sys.executable, "-I", "-m", "autograder.worker", "--zygote", str(theirs.fileno())]
        self.cgroup = _ControlGroup()
        self.child = None  # the running submission's handle, which gets the output
        self.process = subprocess.Popen(
            cmd, pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=self._limit, env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
        theirs.close()
        self.reader = threading.Thread(target=self._read_output, daemon=True)
        self.reader.start()

    def _limit(self):
        self.cgroup.enter()
        for kind, value in ((resource.RLIMIT_AS, ADDRESS_SPACE_BYTES), (resource.RLIMIT_FSIZE, FILE_BYTES),
                            (resource.RLIMIT_NOFILE, 256), (resource.RLIMIT_CORE, 0),
                            (resource.RLIMIT_CPU, CPU_SECONDS)):
            resource.setrlimit(kind, (value, value))

    def alive(self):
        return self.process.poll() is None

    def _read_output(self):
        pipe = self.process.stdout
        while True:
            chunk = pipe.read1(1 << 16)
            if not chunk:
                return
            child = self.child
            if child is not None:
                child.take_output(chunk)

    def spawn(self, deadline):
        """A fresh child for one submission (waits for the zygote's start)."""
        to_child_r, fd_to = os.pipe()
        fd_from, from_child_w = os.pipe()
        child = Child(self, fd_to, fd_from)
        self.child = child
        try:
            socket.send_fds(self.control, [b"spawn".ljust(self.RECORD)], [to_child_r, from_child_w])
            reply = self._record(deadline)
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        if reply != "ok":
            self.kill()
            raise SandboxUnavailable(f"the sandbox did not start a worker ({reply or 'no answer'})")
        return child

    def _record(self, deadline):
        """The next message of the zygote, or None if none comes in time."""
        data = b""
        while len(data) < self.RECORD:
            wait = max(0.0, deadline - time.monotonic())
            if not select.select([self.control], [], [], wait)[0]:
                return None
            chunk = self.control.recv(self.RECORD - len(data))
            if not chunk:
                return None
            data += chunk
        return data.decode().strip()

    def kill(self):
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def close(self):
        self.kill()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self.control.close()
        self.reader.join(timeout=5)
        self.cgroup.remove()


class Child:
    """One submission's worker, forked by a `Zygote`: `fd_to`/`fd_from` are the
    grader's ends of its channel."""

    def __init__(self, zygote, fd_to, fd_from):
        self.zygote, self.fd_to, self.fd_from = zygote, fd_to, fd_from
        self.output = bytearray()
        self.output_total = 0
        self.killed_for = None
        self.status = None

    def take_output(self, chunk):
        self.output_total += len(chunk)
        room = OUTPUT_KEEP_BYTES - len(self.output)
        if room > 0:
            self.output += chunk[:room]
        if self.output_total > OUTPUT_MAX_BYTES and not self.killed_for:
            self.killed_for = f"printed more than {OUTPUT_MAX_BYTES // 2**20} MB"
            self.kill()

    def kill(self):
        self.zygote.kill()  # the only sure way to stop everything the child started

    def _exit_status(self, wait=5.0):
        if self.status is None:
            record = self.zygote._record(time.monotonic() + wait)
            self.status = record if record else "gone"
        return self.status

    def death_reason(self):
        status = self._exit_status()
        if self.killed_for:
            return f"the kernel was stopped: it {self.killed_for}"
        if not status.startswith("exit "):
            return "the kernel died: its sandbox was killed (a memory or process limit, or a kill)"
        code = int(status.split()[1])
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
            hint = {"SIGSEGV": " (a segmentation fault)", "SIGKILL": " (a memory or process limit, or a kill)",
                    "SIGXCPU": " (the CPU time limit)", "SIGXFSZ": " (the file size limit)"}.get(name, "")
            return f"the kernel died: signal {name}{hint}"
        return f"the kernel died: the process exited with status {code}"

    def close(self):
        """End the submission: the child sees its channel close and exits; the
        zygote reports it and cleans up. A zygote that does not is replaced."""
        for fd in (self.fd_to, self.fd_from):
            try:
                os.close(fd)
            except OSError:
                pass
        if self._exit_status(wait=10.0) == "gone" or self.killed_for:
            self.zygote.kill()
        self.zygote.child = None


_zygotes = {}


def spawn(course_root, deadline):
    """A fresh sandboxed worker for one submission, from this process's zygote
    for `course_root` (started, or restarted, as needed)."""
    key = str(Path(course_root).resolve())
    zygote = _zygotes.get(key)
    if zygote is None or not zygote.alive():
        if zygote is not None:
            zygote.close()
        zygote = _zygotes[key] = Zygote(course_root)
    return zygote.spawn(deadline)


@atexit.register
def _close_zygotes():
    for zygote in _zygotes.values():
        zygote.close()
