"""Inside the sandbox: what the zygote does before each submission, and how a
submission's process gives up every privilege before it runs student code.

The zygote (`autograder.worker.zygote`) runs as root of the sandbox: real root
when the grader was started as root, else root of a user namespace that maps
to the grader's own user. It never runs student code. Before each submission
it gives the next child fresh scratch space and IPC (`fresh_scratch`); the
child, before anything of the student's, becomes `SANDBOX_UID` with no
capabilities, no way to gain any (`no_new_privs`) and a system-call filter
(`lock`), then reports what it is (`identity`), which the grader checks
before it sends any student code.
"""
import ctypes
import errno
import os

SANDBOX_UID = 64999  # the student's user: owns no file and no process outside the sandbox
SCRATCH = "/tmp/work"
SHM = "/dev/shm"
SCRATCH_BYTES = 512 * 2**20
SHM_BYTES = 256 * 2**20

CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC = 0x20000, 0x02000000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWTIME = 0x10000000, 0x20000000, 0x40000000, 0x80
MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8
MNT_DETACH = 2
PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 4, 24, 38, 47, 4

# What a sandbox escape needs, denied with EPERM: namespaces and mounts,
# other processes' memory, the kernel's keyrings, BPF and perf, modules,
# io_uring (whose operations bypass this filter), and the clock and host.
DENIED = ("mount", "umount2", "pivot_root", "chroot", "unshare", "setns", "ptrace", "process_vm_readv",
          "process_vm_writev", "kcmp", "pidfd_getfd", "open_by_handle_at", "name_to_handle_at", "fsopen",
          "fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr", "keyctl", "add_key",
          "request_key", "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter",
          "io_uring_register", "init_module", "finit_module", "delete_module", "kexec_load",
          "kexec_file_load", "reboot", "swapon", "swapoff", "acct", "quotactl", "syslog", "vhangup",
          "sethostname", "setdomainname", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
          "iopl", "ioperm", "lookup_dcookie", "fanotify_init", "personality", "setuid", "setgid",
          "setreuid", "setregid", "setresuid", "setresgid", "setgroups", "setfsuid", "setfsgid", "capset")
NEW_NAMESPACES = CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID \
    | CLONE_NEWNET | CLONE_NEWTIME

_libc = ctypes.CDLL(None, use_errno=True)


class LockdownFailed(RuntimeError):
    """A step that must succeed before student code runs did not."""


def _call(name, *args):
    if getattr(_libc, name)(*args) != 0:
        e = ctypes.get_errno()
        raise LockdownFailed(f"{name}: {os.strerror(e)}")


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


def real_root():
    """Whether this process is root of the machine (not of a user namespace)."""
    with open("/proc/self/uid_map") as f:
        return f.read().split()[:2] == ["0", "0"]


def lock_zygote():
    """The zygote itself: not dumpable, so no process of a student's (same
    user or not) may open its memory or trace it."""
    _call("prctl", PR_SET_DUMPABLE, 0, 0, 0, 0)


def fresh_scratch():
    """In the zygote, before each child: new, empty `/tmp/work` and `/dev/shm`
    (whatever the previous child left is unmounted with them) and a new IPC
    namespace (System V and POSIX message queues start empty)."""
    owner = SANDBOX_UID if real_root() else 0  # the child's user, as this namespace spells it
    for target, size, mode in ((SCRATCH, SCRATCH_BYTES, "0700"), (SHM, SHM_BYTES, "1777")):
        while _libc.umount2(target.encode(), MNT_DETACH) == 0:
            pass  # also whatever was stacked on it
        options = f"size={size},mode={mode},uid={owner},gid={owner}".encode()
        _call("mount", b"tmpfs", target.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, options)
    _call("unshare", CLONE_NEWIPC)


def _last_capability():
    with open("/proc/sys/kernel/cap_last_cap") as f:
        return int(f.read())


def _drop_all_capabilities():
    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]

    header, data = Header(0x20080522, 0), (Data * 2)()  # _LINUX_CAPABILITY_VERSION_3: zeros
    _call("capset", ctypes.byref(header), ctypes.byref(data))


def syscall_filter():
    """The filter every submission runs under (built once, in the zygote)."""
    import pyseccomp as seccomp

    f = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    for name in DENIED:
        try:
            f.add_rule(seccomp.ERRNO(errno.EPERM), name)
        except (OSError, ValueError, RuntimeError):
            pass  # not a system call of this architecture
    # clone() with any namespace flag; clone3 passes its flags in memory a
    # filter cannot read, so it reports "not implemented" and libc falls back.
    for flag in (CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID,
                 CLONE_NEWNET):
        f.add_rule(seccomp.ERRNO(errno.EPERM), "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
    f.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    return f


def lock(filter_):
    """In a fresh child, before any student code: become `SANDBOX_UID`, drop
    every capability for good, and load the system-call filter."""
    if real_root():
        for cap in range(_last_capability() + 1):
            _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
        os.setgroups([])
        os.setresgid(SANDBOX_UID, SANDBOX_UID, SANDBOX_UID)
        os.setresuid(SANDBOX_UID, SANDBOX_UID, SANDBOX_UID)  # clears the permitted and effective sets
    else:
        # Root of the zygote's user namespace: a nested one maps that root to
        # SANDBOX_UID, with nothing above it.
        _call("unshare", CLONE_NEWUSER)
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"{SANDBOX_UID} 0 1")
        _write("/proc/self/gid_map", f"{SANDBOX_UID} 0 1")
        for cap in range(_last_capability() + 1):
            _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
    _call("prctl", PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    _drop_all_capabilities()
    _call("prctl", PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    _call("prctl", PR_SET_DUMPABLE, 0, 0, 0, 0)
    filter_.load()


def identity():
    """What this process is, from the kernel's own account: the grader refuses
    to grade unless it is unprivileged, capability-free and filtered."""
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("Uid", "Gid", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp"):
                fields[key] = value.split()[0]
    return fields


def unreadable():
    """The folders of the interpreter's search path that this process cannot
    read (files installed with a strict umask, say)."""
    import sys

    return [p for p in sys.path if os.path.isdir(p) and not os.access(p, os.R_OK | os.X_OK)]


def problems(ident):
    """Why a process with this `identity()` must not run student code ([] if fine)."""
    found = []
    try:
        if int(ident.get("Uid", "0")) == 0:
            found.append("it runs as root")
        for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            if int(ident.get(cap, "1"), 16) != 0:
                found.append(f"{cap} is {ident.get(cap)}, not 0")
        if ident.get("NoNewPrivs") != "1":
            found.append("no_new_privs is not set")
        if ident.get("Seccomp") != "2":
            found.append("no system-call filter is loaded")
        if ident.get("unreadable"):
            found.append(f"the sandbox's user cannot read {', '.join(map(str, ident['unreadable']))} "
                         f"(make them readable by all)")
    except (TypeError, ValueError, AttributeError):
        found.append(f"it reported {ident!r}")
    return found
