"""Sandboxes for student code.

The worker (`autograder.worker`) runs under bubblewrap (`bwrap`, Debian
package `bubblewrap`) with

- its own PID, network, IPC and UTS namespaces: no network at all (not even
  loopback to the grader), no view of other processes, killed with its parent;
- an empty, read-only root holding only what the worker needs, read-only:
  `/usr`, the loader's files of `/etc`, the interpreter, its packages and the
  course's code (`course_code`); the course folder, the submissions, the
  solutions, the tests, the home folder and `/tmp` are not there at all; the
  only writable places are a scratch folder and `/dev/shm`, in memory;
- resource limits: a control group capping its processes and memory where the
  machine allows one (checked by `limits_in_force`), and rlimits on address
  space, file size, open files, CPU time and core dumps everywhere;
- its output read by a thread of the grader that keeps the first
  `OUTPUT_KEEP_BYTES` and stops the worker past `OUTPUT_MAX_BYTES`.

Each grading process keeps one such sandbox, a *zygote* that has imported
torch, and forks a fresh child in it for every submission (`spawn`): its own
process tree and pipes, a new scratch folder, `/dev/shm` and IPC namespace.
Before any student code the child becomes an unprivileged user with no
capabilities under a system-call filter (`autograder.lockdown`), whoever
started the grader, and the grader checks the kernel's account of it
(`Child.check`).
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


# From /etc, only what the dynamic loader and Python's start-up read.
ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "nsswitch.conf")


def interpreter():
    """This interpreter's path as the sandbox sees it: inside the resolved venv
    that `course_code` binds (a path like `tests/../.venv/bin/python`, or one
    through a symbolic link, does not exist there)."""
    exe, prefix = Path(os.path.abspath(sys.executable)), Path(os.path.abspath(sys.prefix))
    if prefix in exe.parents:
        return str(Path(sys.prefix).resolve() / exe.relative_to(prefix))
    return os.path.realpath(sys.executable)


def course_code():
    """The folders the worker imports from: the interpreter, its packages (the
    venv, and any folder its `.pth` files add) and the grader's package,
    wherever they were installed. Never the course repository itself (its
    `solutions/`) nor a folder above it: only its package folders."""
    import importlib.util

    found = {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve()}
    found.update(Path(p).resolve() for p in importlib.util.find_spec("autograder").submodule_search_locations)
    # The worker runs isolated (-I): PYTHONPATH means nothing to it, and
    # binding it could show the student a home folder.
    own = {Path(p).resolve() for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p}
    for entry in sys.path[1:]:  # [0] is the script's folder or the current one
        path = Path(entry).resolve() if entry else None
        if (path and path.is_dir() and path not in own and path != Path.home() and path not in Path.home().parents
                and not (path == REPO or REPO in path.parents or path in REPO.parents)):
            found.add(path)
    # One bind for a folder inside another (a venv inside the repository is bound apart).
    return sorted(p for p in found if not any(q != p and q in p.parents for q in found))


def course_files(course_modules):
    """The course package's folder and the files of it the sandbox holds: its
    `__init__` and `utils`, and `course_modules` (the modules the released
    notebook imports), never the rest, which holds the course's answers."""
    import importlib.util

    folder = Path(importlib.util.find_spec("edgpt").submodule_search_locations[0]).resolve()
    names = {"__init__", "utils"} | {m.split(".", 1)[1] for m in course_modules}
    return folder, sorted(folder / f"{n.replace('.', '/')}.py" for n in names)


def _data(text):
    """A descriptor bwrap reads a file's contents from (`--ro-bind-data`)."""
    r, w = os.pipe()
    os.write(w, text.encode())  # far below a pipe's buffer
    os.close(w)
    return r


def _mounts(course_modules):
    """bwrap's file system arguments: an empty, read-only root holding only
    the system's programs and libraries (/usr), the interpreter and the
    course's code, read-only; a private /proc and /dev; writable nothing but
    the scratch folder and /dev/shm that the zygote mounts afresh for each
    submission. Returns (arguments, descriptors to pass)."""
    from autograder.lockdown import SANDBOX_UID, SCRATCH

    args, fds = ["--ro-bind", "/usr", "/usr"], []
    for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = Path("/") / top
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    for name in ETC_FILES:
        if (Path("/etc") / name).exists():
            args += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
    users = {"passwd": f"root:x:0:0::/:/bin/false\nstudent:x:{SANDBOX_UID}:{SANDBOX_UID}::{SCRATCH}:/bin/false\n",
             "group": f"root:x:0:\nstudent:x:{SANDBOX_UID}:\n"}
    for name, text in users.items():
        fds.append(_data(text))
        args += ["--ro-bind-data", str(fds[-1]), f"/etc/{name}"]
    # /tmp first: a course installed under /tmp is bound on top of it.
    args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--dir", SCRATCH]
    made = set()
    package, files = course_files(course_modules)

    def parents(path):
        nonlocal args
        for parent in reversed(path.parents[:-1]):  # bwrap would make them 0700
            if parent not in made:
                made.add(parent)
                args += ["--perms", "0755", "--dir", str(parent)]

    for path in course_code():
        if not str(path).startswith("/usr/"):
            parents(path)
            args += ["--ro-bind", str(path), str(path)]
    # The course package: an empty folder (over an installed copy, if a bound
    # folder holds one) with only the files it may offer.
    parents(package)
    args += ["--perms", "0755", "--tmpfs", str(package)]
    for path in files:
        parents(path)
        args += ["--ro-bind", str(path), str(path)]
    args += ["--remount-ro", str(package), "--remount-ro", "/tmp", "--remount-ro", "/dev", "--remount-ro", "/",
             "--chdir", "/"]
    return args, fds


def _namespaces():
    """Every namespace bwrap can give; as root, no user namespace (the zygote
    stays root of the machine, and each child becomes a user of its own), else
    one whose root is the zygote (each child maps itself to a user below it)."""
    args = ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
    if os.geteuid() != 0:
        args += ["--unshare-user", "--uid", "0", "--gid", "0", "--cap-add", "ALL"]
    return args


def bwrap_command(*program, course_modules=()):
    """`program` inside the sandbox: (the command, descriptors it must be given)."""
    from autograder.lockdown import SCRATCH

    mounts, data_fds = _mounts(course_modules)
    env = {"HOME": SCRATCH, "TMPDIR": SCRATCH, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
           "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    return [BWRAP, *_namespaces(), "--die-with-parent", "--new-session", "--clearenv", *mounts,
            *[x for k, v in env.items() for x in ("--setenv", k, v)], *program], data_fds


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

    def __init__(self, course_modules=(), confine=True):
        if not BWRAP:
            raise SandboxUnavailable("bubblewrap (bwrap) is not installed: apt-get install bubblewrap")
        self.control, theirs = socket.socketpair()
        cmd, data_fds = bwrap_command(interpreter(), "-I", "-m", "autograder.worker", "--zygote",
                                      str(theirs.fileno()), *([] if confine else ["--unconfined"]),
                                      course_modules=course_modules)
        self.cgroup = _ControlGroup()
        self.child = None  # the running submission's handle, which gets the output
        self.early_output = bytearray()  # what the zygote printed on its own (its start-up errors)
        try:
            self.process = subprocess.Popen(
                cmd, pass_fds=(theirs.fileno(), *data_fds), stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=self._limit, env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
        finally:
            theirs.close()
            for fd in data_fds:
                os.close(fd)
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
            elif len(self.early_output) < OUTPUT_KEEP_BYTES:
                self.early_output += chunk

    def spawn(self, deadline):
        """A fresh child for one submission (waits for the zygote's start)."""
        to_child_r, fd_to = os.pipe()
        fd_from, from_child_w = os.pipe()
        child = Child(self, fd_to, fd_from)
        try:
            socket.send_fds(self.control, [b"spawn".ljust(self.RECORD)], [to_child_r, from_child_w])
            reply = self._record(deadline)
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        if reply != "ok":
            self.kill()
            raise SandboxUnavailable(f"the sandbox did not start a worker ({reply or 'no answer'}); "
                                     f"its output: {self.output_so_far()}")
        self.child = child  # what the sandbox prints from now on is this submission's
        child.check(deadline)
        return child

    def output_so_far(self):
        time.sleep(0.2)  # what the zygote printed before it stopped
        return bytes(self.early_output[-2000:]).decode(errors="replace").strip() or "(none)"

    def _record(self, deadline):
        """The next message of the zygote, or None if none comes in time."""
        data = b""
        while len(data) < self.RECORD:
            wait = max(0.0, deadline - time.monotonic())
            if not select.select([self.control], [], [], wait)[0]:
                return None
            try:
                chunk = self.control.recv(self.RECORD - len(data))
            except ConnectionResetError:  # the zygote is gone
                return None
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

    def check(self, deadline):
        """The child's first message: what the kernel says it is. Student code
        is sent only to an unprivileged, capability-free, filtered process."""
        from autograder import lockdown, wire

        try:
            hello = wire.recv(self.fd_from, deadline)
            found = [hello["problem"]] if "problem" in hello else lockdown.problems(hello["identity"])
        except (wire.WorkerGone, wire.Deadline, wire.ProtocolError, KeyError, TypeError) as e:
            found = [f"no report from the worker ({type(e).__name__})"]
        if found:
            self.zygote.kill()
            raise SandboxUnavailable("refusing to grade: the sandbox's process for student code is not "
                                     "confined: " + "; ".join(found))

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


class LocalChild(Child):
    """A student's own check (`validate`): the same worker and channel as in
    grading, as a plain process of the student's in a folder of its own, no
    sandbox (there is nothing to protect from oneself, and a laptop may have
    no bubblewrap). Stopped with its whole process group."""

    def __init__(self, deadline):
        import tempfile

        to_child_r, fd_to = os.pipe()
        fd_from, from_child_w = os.pipe()
        super().__init__(self, fd_to, fd_from)
        self.folder = tempfile.TemporaryDirectory(prefix="edgpt-check-")
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "autograder.worker", "--local", str(to_child_r), str(from_child_w)],
                pass_fds=(to_child_r, from_child_w), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, start_new_session=True, cwd=self.folder.name,
                env={**os.environ, "OMP_NUM_THREADS": "1"})
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.check(deadline)

    def _read(self):
        for chunk in iter(lambda: self.process.stdout.read1(65536), b""):
            self.take_output(chunk)

    def check(self, deadline):
        from autograder import wire

        try:
            wire.recv(self.fd_from, deadline)
        except (wire.WorkerGone, wire.Deadline, wire.ProtocolError) as e:
            self.kill()
            raise SandboxUnavailable(f"the checking process did not start ({type(e).__name__}): "
                                     f"{bytes(self.output[-2000:]).decode(errors='replace')}") from None

    def kill(self):
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def _exit_status(self, wait=5.0):
        if self.status is None:
            try:
                self.status = f"exit {self.process.wait(timeout=wait)}"
            except subprocess.TimeoutExpired:
                self.status = "gone"
        return self.status

    def close(self):
        for fd in (self.fd_to, self.fd_from):
            try:
                os.close(fd)
            except OSError:
                pass
        self._exit_status(wait=10.0)
        self.kill()
        self.process.wait()
        self.folder.cleanup()


_zygotes = {}


def spawn(deadline, course_modules=()):
    """A fresh sandboxed worker for one submission, from this process's zygote
    for that set of course modules (started, or restarted, as needed)."""
    key = frozenset(course_modules)
    zygote = _zygotes.get(key)
    if zygote is None or not zygote.alive():
        if zygote is not None:
            zygote.close()
        zygote = _zygotes[key] = Zygote(key)
    return zygote.spawn(deadline)


@atexit.register
def _close_zygotes():
    for zygote in _zygotes.values():
        zygote.close()
