# A student's cell that leaves something behind on one channel (CHANNEL, set
# before this code), for the student graded after it by the same sandbox
# (see find_traces.py).
import ctypes
import os
import socket
import subprocess

if CHANNEL == "files":
    for path in ("/tmp/work/trace", "/dev/shm/trace", "/tmp/trace", "/dev/trace", os.path.expanduser("~/trace")):
        try:
            with open(path, "w") as f:
                f.write("left by the previous student")
        except OSError:
            pass
if CHANNEL == "ipc":
    libc = ctypes.CDLL(None, use_errno=True)
    KEY, IPC_CREAT = 0x5EED, 0o1000
    libc.shmget(KEY, 4096, IPC_CREAT | 0o666)
    libc.msgget(KEY, IPC_CREAT | 0o666)
    libc.semget(KEY, 1, IPC_CREAT | 0o666)
if CHANNEL == "processes":
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind("\0edgpt-trace")
    listener.listen()
    subprocess.Popen(["sleep", "120"], pass_fds=[listener.fileno()], start_new_session=True)
