# A student's cell that tries, one by one, what a sandbox escape needs, and
# lists in `leak` every attempt that worked. Nothing here does harm when a
# protection fails: mounts are tried inside the scratch folder, a traced
# process is let go at once, another process's memory is opened, never written.
import ctypes
import os

libc = ctypes.CDLL(None, use_errno=True)
leak = []


def attempt(name, fn):
    try:
        if fn():
            leak.append(name)
    except Exception:
        pass


status = open("/proc/self/status").read()
fields = {line.split(":")[0]: line.split()[1] for line in status.splitlines() if ":" in line and line.split()[1:]}
if os.getuid() == 0 or os.geteuid() == 0:
    leak.append("runs as root")
leak += [f"{cap} {fields[cap]}" for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb") if int(fields[cap], 16)]
if fields.get("Seccomp") != "2":
    leak.append("no system-call filter")
for flag, name in ((0x10000000, "user"), (0x20000, "mount"), (0x40000000, "network"), (0x08000000, "ipc"),
                   (0x20000000, "pid")):
    attempt(f"unshare {name} namespace", lambda f=flag: libc.unshare(f) == 0)
os.makedirs("/tmp/work/m", exist_ok=True)
attempt("mount a tmpfs", lambda: libc.mount(b"tmpfs", b"/tmp/work/m", b"tmpfs", 0, None) == 0)
attempt("remount / read-write", lambda: libc.mount(None, b"/", None, 32 | 4096, None) == 0)
attempt("unmount /proc", lambda: libc.umount2(b"/proc/sys", 2) == 0)
attempt("setns into pid 1's mount namespace",
        lambda: libc.setns(os.open("/proc/1/ns/mnt", os.O_RDONLY), 0) == 0)


def _trace(pid):
    if libc.ptrace(16, pid, None, None) == 0:  # PTRACE_ATTACH
        libc.ptrace(17, pid, None, None)  # PTRACE_DETACH
        return True
    return False


for pid in [p for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]:
    attempt(f"open /proc/{pid}/mem for writing", lambda p=pid: os.close(os.open(f"/proc/{p}/mem", os.O_RDWR)) or True)
    attempt(f"ptrace pid {pid}", lambda p=pid: _trace(int(p)))
attempt("io_uring", lambda: libc.syscall(425, 8, ctypes.create_string_buffer(120)) >= 0)
for path in ("/dev/planted", "/tmp/planted", "/usr/planted", "/etc/planted", "/planted", "/proc/planted"):
    attempt(f"write {path}", lambda p=path: open(p, "w").write("x") is not None)
