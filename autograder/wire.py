"""Messages between the trusted grader and the sandboxed worker.

A message is an 8-byte little-endian length and a MessagePack document
(`msgpack`) of plain data: maps with string keys, arrays, strings, bytes,
numbers, booleans, None, and two extensions: a tuple, and a tensor (dtype,
shape, raw bytes). MessagePack has no references, so what arrives is a tree
no larger than the bytes that carried it, and the reader holds it to bounds
that the student's process cannot move: the message's size, each string's
and each container's length, the total number of elements, the nesting depth,
and a tensor's bytes, which must be exactly its shape times its item size.
Whatever the student's process writes, the grader gets bounded data, never
objects or code.
"""
import os
import select
import struct
import time

import msgpack
import torch

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


def local_class(name, course_modules=()):
    """The grader's own class for a name from `local_class_name`: one of
    PyTorch's layers, or a class of a course module the released notebook
    imports (`course_modules`), never any other of the course's classes."""
    import importlib

    module, _, qualname = str(name).partition(":")
    if not (module == "torch.nn" and qualname in LOCAL_MODULES) and module not in course_modules:
        raise ProtocolError(f"{str(name)[:80]} is not a class the grader rebuilds")
    cls = getattr(importlib.import_module(module), qualname, None)
    if not isinstance(cls, type) or not issubclass(cls, torch.nn.Module):
        raise ProtocolError(f"{str(name)[:80]} is not a layer")
    return cls

MAX_MESSAGE_BYTES = 128 * 2**20   # one message (a model's weights fit)
MAX_STRING_BYTES = 2**20          # one string or bytes value
MAX_ITEMS = 2**20                 # elements of all containers of one message, together
MAX_DEPTH = 48                    # containers inside containers
MAX_DIMS = 8                      # a tensor's dimensions

_TUPLE, _TENSOR = 1, 2
# The dtypes that may cross, by a one-byte code (bfloat16 travels as its bits).
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.int16,
          torch.int8, torch.uint8, torch.bool, torch.complex64]
_DTYPE_CODE = {d: i for i, d in enumerate(DTYPES)}


class ProtocolError(Exception):
    """The worker sent something that is not a well-formed message."""


class WorkerGone(Exception):
    """The worker's end of the channel closed: it exited or was killed."""


class Deadline(Exception):
    """No complete message arrived in time."""


def _encode_tensor(t):
    t = t.detach().cpu().contiguous()
    if t.dtype not in _DTYPE_CODE:
        raise TypeError(f"a {t.dtype} tensor cannot be sent")
    raw = (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy().tobytes()
    head = struct.pack(f"<BB{t.dim()}Q", _DTYPE_CODE[t.dtype], t.dim(), *t.shape)
    return msgpack.ExtType(_TENSOR, head + raw)


def _default(v):
    """What MessagePack does not know natively (`strict_types`: subclasses too)."""
    if isinstance(v, torch.Tensor):
        return _encode_tensor(v)
    if isinstance(v, tuple):
        return msgpack.ExtType(_TUPLE, _packb(list(v)))
    if isinstance(v, bool):
        return bool(v)
    for kind in (int, float, str, list, dict):
        if isinstance(v, kind):
            return kind(v)
    raise TypeError(f"a {type(v).__name__} cannot be sent")


def _packb(v):
    return msgpack.packb(v, default=_default, strict_types=True, use_bin_type=True)


class _Reader:
    """One message's decoding, with its running totals."""

    def __init__(self):
        self.items = 0
        self.depth = 0

    def count(self, n):
        self.items += n
        if self.items > MAX_ITEMS:
            raise ProtocolError(f"more than {MAX_ITEMS} elements")

    def unpack(self, data):
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ProtocolError(f"nested deeper than {MAX_DEPTH}")
        try:
            return msgpack.unpackb(
                data, ext_hook=self.ext, list_hook=self.list, object_pairs_hook=self.map, raw=False,
                strict_map_key=True, max_str_len=MAX_STRING_BYTES,
                max_bin_len=MAX_STRING_BYTES, max_array_len=MAX_ITEMS, max_map_len=MAX_ITEMS,
                max_ext_len=MAX_MESSAGE_BYTES)
        finally:
            self.depth -= 1

    def list(self, items):
        self.count(len(items))
        return items

    def map(self, pairs):
        self.count(len(pairs))
        return dict(pairs)  # string keys only (strict_map_key): their hashes are randomised

    def ext(self, code, data):
        self.count(1)
        if code == _TUPLE:
            items = self.unpack(data)
            if not isinstance(items, list):
                raise ProtocolError("a malformed tuple")
            return tuple(items)
        if code == _TENSOR:
            return _decode_tensor(data)
        raise ProtocolError(f"unknown extension {code}")


def _decode_tensor(data):
    if len(data) < 2 or data[0] >= len(DTYPES) or data[1] > MAX_DIMS or len(data) < 2 + 8 * data[1]:
        raise ProtocolError("a malformed tensor")
    dtype, dims = DTYPES[data[0]], data[1]
    shape = struct.unpack_from(f"<{dims}Q", data, 2)
    raw = data[2 + 8 * dims:]
    count = 1
    for n in shape:
        count *= n
    if count * torch.empty((), dtype=dtype).element_size() != len(raw):
        raise ProtocolError(f"a tensor of shape {tuple(shape)} sent with {len(raw)} bytes")
    if not raw:
        return torch.empty(shape, dtype=dtype)
    storage = torch.int16 if dtype == torch.bfloat16 else dtype
    return torch.frombuffer(bytearray(raw), dtype=storage).view(dtype).reshape(shape)


def dumps(obj) -> bytes:
    data = _packb(obj)
    return struct.pack("<Q", len(data)) + data


def _check_depth(value):
    stack = [(value, 0)]
    while stack:
        v, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ProtocolError(f"nested deeper than {MAX_DEPTH}")
        if isinstance(v, (list, tuple)):
            stack.extend((x, depth + 1) for x in v)
        elif isinstance(v, dict):
            stack.extend((x, depth + 1) for x in v.values())


def loads(data: bytes):
    try:
        value = _Reader().unpack(data)
        _check_depth(value)
        return value
    except ProtocolError:
        raise
    except Exception as e:  # noqa: BLE001 - anything malformed is a protocol error
        raise ProtocolError(f"{type(e).__name__}: {str(e)[:200]}") from None


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
    return loads(_read_exactly(fd, n, deadline))


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
