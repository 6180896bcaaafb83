# A student's cell that lists in `leak` whatever the student graded before it
# by the same sandbox left behind (see leave_traces.py).
import ctypes
import os
import socket

libc = ctypes.CDLL(None, use_errno=True)
leak = [p for p in ("/tmp/work/trace", "/dev/shm/trace", "/tmp/trace", "/dev/trace",
                    os.path.expanduser("~/trace")) if os.path.exists(p)]
KEY = 0x5EED
leak += [kind for kind, found in (("shm", libc.shmget(KEY, 0, 0)), ("msg", libc.msgget(KEY, 0)),
                                  ("sem", libc.semget(KEY, 0, 0))) if found >= 0]
try:
    socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).connect("\0edgpt-trace")
    leak.append("a listening socket")
except OSError:
    pass
mine = {os.getpid(), os.getppid(), 1}
leak += [f"process {p}" for p in os.listdir("/proc") if p.isdigit() and int(p) not in mine]
leak += RNG_LEAK  # from the first answer cell: the random state it started with
