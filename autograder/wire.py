"""Messages between the trusted grader and the sandboxed worker.

A message is an 8-byte little-endian length and a pickle of plain data:
dicts, lists, tuples, strings, bytes, numbers, None; a tensor travels as a
tuple (marker, dtype, shape, raw bytes). The reader's unpickler refuses every
global, so it can only build those plain types: whatever the student's
process writes, the grader gets data, never objects or code. (A tenth of a
millisecond per message: `torch.save` took over a millisecond, which the
decoding tests, with thousands of calls back and forth, felt.)
"""
import io
import os
import pickle
import select
import struct
import time

import torch

_TENSOR = "\0tensor"

# PyTorch's own layers and the course's (`edgpt`) travel as their class name
# and weights; the grader rebuilds them as the same class from its own copy of
# the code. Every other module stays the student's.
LOCAL_MODULES = {"Linear", "LayerNorm", "Embedding", "ReLU", "GELU", "Tanh", "Sigmoid", "Dropout", "Identity",
                 "Softmax", "SiLU"}


def local_class_name(cls):
    """"module:qualname" of a class the grader may rebuild itself, else None."""
    import importlib

    if cls.__name__ in LOCAL_MODULES and getattr(torch.nn, cls.__name__, None) is cls:
        return f"torch.nn:{cls.__name__}"
    if cls.__module__.startswith("edgpt.") and "." not in cls.__qualname__:
        try:
            if getattr(importlib.import_module(cls.__module__), cls.__qualname__, None) is cls:
                return f"{cls.__module__}:{cls.__qualname__}"
        except ImportError:
            return None
    return None


def local_class(name):
    """The grader's own class for a name from `local_class_name`."""
    import importlib

    module, qualname = str(name).split(":")
    if not (module == "torch.nn" and qualname in LOCAL_MODULES) and not module.startswith("edgpt."):
        raise ProtocolError(f"{name} is not a class the grader rebuilds")
    return getattr(importlib.import_module(module), qualname)

MAX_MESSAGE_BYTES = 256 * 2**20


class ProtocolError(Exception):
    """The worker sent something that is not a well-formed message."""


class WorkerGone(Exception):
    """The worker's end of the channel closed: it exited or was killed."""


class Deadline(Exception):
    """No complete message arrived in time."""


def _pack(v):
    if isinstance(v, torch.Tensor):
        t = v.detach().cpu().contiguous()
        raw = t.view(torch.int16) if t.dtype == torch.bfloat16 else t  # numpy has no bfloat16
        return (_TENSOR, str(t.dtype).replace("torch.", ""), tuple(t.shape), raw.numpy().tobytes())
    if isinstance(v, list):
        return [_pack(x) for x in v]
    if isinstance(v, tuple):
        return tuple(_pack(x) for x in v)
    if isinstance(v, dict):
        return {k: _pack(x) for k, x in v.items()}
    return v


def _unpack(v):
    if isinstance(v, tuple) and len(v) == 4 and v[0] == _TENSOR:
        _, dtype, shape, raw = v
        dtype = getattr(torch, dtype)
        if not isinstance(dtype, torch.dtype) or not isinstance(raw, bytes):
            raise ProtocolError("a malformed tensor")
        if not raw:
            return torch.empty(shape, dtype=dtype)
        storage = torch.int16 if dtype == torch.bfloat16 else dtype
        return torch.frombuffer(bytearray(raw), dtype=storage).view(dtype).reshape(shape)
    if isinstance(v, list):
        return [_unpack(x) for x in v]
    if isinstance(v, tuple):
        return tuple(_unpack(x) for x in v)
    if isinstance(v, dict):
        return {k: _unpack(x) for k, x in v.items()}
    return v


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"refused {module}.{name}: only plain data may be sent")


def dumps(obj) -> bytes:
    data = pickle.dumps(_pack(obj), protocol=5)
    return struct.pack("<Q", len(data)) + data


def loads(data: bytes):
    return _unpack(_PlainUnpickler(io.BytesIO(data)).load())


def send(fd: int, obj) -> None:
    data = dumps(obj)
    while data:
        data = data[os.write(fd, data):]


def _read_exactly(fd, n, deadline):
    chunks, left = [], n
    while left:
        if deadline is not None:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([fd], [], [], wait)[0]:
                raise Deadline()
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise WorkerGone()
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def recv(fd: int, deadline: float = None):
    """The next message from `fd`; `deadline` is a `time.monotonic()` value."""
    (n,) = struct.unpack("<Q", _read_exactly(fd, 8, deadline))
    if n > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"a message of {n} bytes")
    data = _read_exactly(fd, n, deadline)
    try:
        return loads(data)
    except Exception as e:  # noqa: BLE001 - anything malformed is a protocol error
        raise ProtocolError(f"{type(e).__name__}: {e}") from None


def tensor_leaves(args, kwargs):
    """The tensors among call arguments, in a fixed order (both sides walk the
    same structure, so the order matches)."""
    found = []

    def walk(v):
        if isinstance(v, torch.Tensor):
            found.append(v)
        elif isinstance(v, (list, tuple)):
            for x in v:
                walk(x)
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)

    walk(list(args))
    walk(kwargs)
    return found
