"""The sandboxed side of grading: runs a student's cells and answers calls.

Started by `autograder.sandbox` as `python -I -m autograder.worker --zygote FD`
inside the sandbox: a zygote that forks one worker per submission, each with
its two pipe descriptors (see `zygote`). A worker executes the cells it is
sent in one namespace, then serves requests from the trusted grader: call a
student's function, build an instance of a student's class, run a module.
Everything it sends back is data (see `autograder.wire`); the grader decides
what passed. Nothing here is trusted: the student's code can change any of
it, and gains nothing by doing so.
"""
import os
import sys
import traceback
import types

import torch
from torch import nn

from autograder import wire

SIMPLE = (int, float, bool, str, type(None))
MESSAGE_CHARS = 2000  # of an exception's message (the grader cuts longer ones too)


class CallbackFailed(Exception):
    """A function of the grader's, called by the student's code, raised."""

    def __init__(self, ref, message):
        super().__init__(message)
        self.ref = ref


class Worker:
    def __init__(self, fd_in, fd_out):
        self.fd_in, self.fd_out = fd_in, fd_out
        self.objects = {}   # id -> student object the grader refers to
        self.generators = {}
        self.graphs = {}    # call id -> (inputs, outputs) kept for a backward pass
        self.namespace = {"__name__": "__main__", "__builtins__": __builtins__,
                          "get_ipython": lambda: _NoIPython()}
        self.saved = {}     # names the grader substituted, and what they were

    # ------------------------------------------------------------ encoding
    def ref(self, obj):
        self.objects[id(obj)] = obj
        return id(obj)

    def describe_module(self, m):
        cls = type(m)
        local_class = wire.local_class_name(cls)
        attrs = {}
        for k, v in vars(m).items():
            if k.startswith("_") or k == "training":
                continue
            if isinstance(v, SIMPLE) or isinstance(v, torch.Tensor) or (
                    isinstance(v, tuple) and all(isinstance(x, SIMPLE) for x in v)):
                attrs[k] = v.detach().cpu() if isinstance(v, torch.Tensor) else v
        methods = sorted(n for n in dir(cls) if not n.startswith("_") and not hasattr(nn.Module, n)
                         and callable(getattr(cls, n, None)))
        return {"__t__": "module", "id": self.ref(m), "class": cls.__name__, "class_id": self.ref(cls),
                "local_class": local_class, "training": m.training, "attrs": attrs, "methods": methods,
                # None entries too: nn.Linear(bias=False) has a `bias` that is None.
                "params": {n: None if p is None else {"key": id(p), "t": p.detach().cpu(), "rg": p.requires_grad}
                           for n, p in m._parameters.items()},
                "buffers": {n: None if b is None else b.detach().cpu() for n, b in m._buffers.items()},
                # _modules, not named_children(): one module under two names
                # (a shared LayerNorm) must stay one module on the other side.
                "children": {n: None if c is None else self.describe_module(c) for n, c in m._modules.items()}}

    def out(self, v):
        """A value of the student's process, as data for the grader."""
        if isinstance(v, torch.Tensor):
            return v.detach().cpu()
        if isinstance(v, SIMPLE):
            return v
        if isinstance(v, torch.Generator):
            return {"__t__": "gen", "key": self._gen_key(v), "state": v.get_state()}
        if isinstance(v, _Callback):
            return {"__t__": "cb", "id": v._cb_id}
        if isinstance(v, (list, tuple)):
            items = [self.out(x) for x in v]
            return items if isinstance(v, list) else tuple(items)
        if isinstance(v, dict) and all(isinstance(k, SIMPLE) for k in v):
            return {"__t__": "dict", "items": [(k, self.out(x)) for k, x in v.items()]}
        if isinstance(v, torch.Size):
            return tuple(v)
        if isinstance(v, torch.dtype):
            return {"__t__": "dtype", "name": str(v).replace("torch.", "")}
        if isinstance(v, nn.Module):
            return self.describe_module(v)
        if isinstance(v, type):
            return {"__t__": "class", "id": self.ref(v), "name": v.__name__,
                    "module": issubclass(v, nn.Module), "course": from_course(v)}
        if callable(v):
            return {"__t__": "function", "id": self.ref(v), "name": str(getattr(v, "__name__", "function")),
                    "course": from_course(v)}
        return {"__t__": "object", "id": self.ref(v), "class": type(v).__name__, "course": from_course(v)}

    def _gen_key(self, g):
        for key, known in self.generators.items():
            if known is g:
                return key
        return None

    def into(self, v):
        """A value from the grader, as an object of this process."""
        if isinstance(v, (list, tuple)):
            items = [self.into(x) for x in v]
            return items if isinstance(v, list) else tuple(items)
        if not isinstance(v, dict) or "__t__" not in v:
            return v
        t = v["__t__"]
        if t == "dict":
            return {k: self.into(x) for k, x in v["items"]}
        if t == "ref":
            obj = self.objects[v["id"]]
            if v.get("state"):
                with torch.no_grad():
                    for name, tensor in v["state"].items():
                        _assign(obj, name, tensor)
            if "training" in v and isinstance(obj, nn.Module):
                obj.train(v["training"])
            return obj
        if t == "gen":
            g = self.generators.get(v["key"])
            if g is None:
                g = self.generators[v["key"]] = torch.Generator()
            g.set_state(v["state"])
            return g
        if t == "dtype":
            return getattr(torch, v["name"])
        if t == "cb":
            return _Callback.make(self, v)
        raise wire.ProtocolError(f"unknown value {t}")

    # ------------------------------------------------------------- serving
    def run(self, hello):
        wire.send(self.fd_out, {"op": "hello", **hello})
        while True:
            try:
                msg = wire.recv(self.fd_in)
            except wire.WorkerGone:
                return
            reply = self.handle(msg)
            self.reply(reply)

    def reply(self, reply):
        try:
            data = wire.dumps(reply)
        except (TypeError, ValueError, OverflowError) as e:  # e.g. an int of 100 digits
            data = wire.dumps({"op": "error", "type": type(e).__name__, "builtin": True,
                               "message": f"the result cannot be sent to the grader: {str(e)[:200]}",
                               "rng": torch.get_rng_state()})
        while data:
            data = data[os.write(self.fd_out, data):]

    def handle(self, msg):
        op = msg["op"]
        try:
            if "rng" in msg:
                torch.set_rng_state(msg["rng"])
            if op == "exec":
                value = self.exec_cell(msg["source"], msg["name"])
            elif op == "call":
                value = self.call(msg)
            elif op == "backward":
                value = self.backward(msg)
            elif op == "getattr":
                value = self.out(getattr(self.objects[msg["id"]], msg["name"]))
            elif op == "substitute":  # the grader's reference for other items, during one item's test
                self.saved.update({k: self.namespace.get(k, _MISSING) for k in msg["names"] if k not in self.saved})
                self.namespace.update({k: self.into(v) for k, v in msg["names"].items()})
                value = None
            elif op == "restore":
                for k, v in self.saved.items():
                    self.namespace.pop(k, None) if v is _MISSING else self.namespace.__setitem__(k, v)
                self.saved = {}
                value = None
            else:
                raise wire.ProtocolError(f"unknown op {op}")
            reply = {"op": "result", "value": value}
        except CallbackFailed as e:
            reply = {"op": "callback_failed", "ref": e.ref}
        except (Exception, SystemExit) as e:  # noqa: BLE001 - the student's error, reported as data
            reply = {"op": "error", "type": type(e).__name__[:100], "message": _short(e),
                     "builtin": type(e).__module__ == "builtins"}
        reply["rng"] = torch.get_rng_state()
        reply["generators"] = {k: g.get_state() for k, g in self.generators.items()}
        return reply

    def exec_cell(self, source, name):
        before = dict(self.namespace)
        try:
            exec(compile(_python(source), name, "exec"), self.namespace)  # noqa: S102 - the student's cell
            error = None
        except (Exception, SystemExit) as e:  # noqa: BLE001 - as IPython, sys.exit() ends the cell only
            error = {"type": type(e).__name__[:100], "message": _short(e),
                     "traceback": traceback.format_exc(limit=-3)[-MESSAGE_CHARS:]}
        names = {}
        for k, v in self.namespace.items():
            if k.startswith("__") or isinstance(v, types.ModuleType) or before.get(k, _MISSING) is v:
                continue
            try:
                names[k] = self.out(v)
            except Exception:  # noqa: BLE001 - a value that cannot be described is skipped
                continue
        return {"error": error, "names": names}

    def call(self, msg):
        obj = self.into(msg["target"])  # a module's weights arrive with it
        target = getattr(obj, msg["method"]) if msg.get("method") else obj
        args, kwargs = self.into(msg["args"]), self.into(msg["kwargs"])
        grad_slots = msg.get("grad_slots")
        if grad_slots:  # differentiable call: keep the graph for a backward pass
            leaves = wire.tensor_leaves(args, kwargs)
            inputs = [leaves[i].requires_grad_() for i in grad_slots]
            with torch.enable_grad():
                result = target(*args, **kwargs)
            outputs = result if isinstance(result, tuple) else (result,)
            self.graphs[msg["call"]] = (inputs, outputs)
            return {"value": self.out(result),
                    "requires_grad": [isinstance(o, torch.Tensor) and o.requires_grad for o in outputs]}
        result = target(*args, **kwargs)
        mutated = [t.detach().cpu() for t in wire.tensor_leaves(args, kwargs)]
        return {"value": self.out(result), "mutated": mutated,
                "module": self.describe_module(obj) if isinstance(obj, nn.Module) else None}

    def backward(self, msg):
        inputs, outputs = self.graphs.pop(msg["call"])
        pairs = [(o, g) for o, g in zip(outputs, msg["grads"]) if g is not None and o.requires_grad]
        grads = torch.autograd.grad([o for o, _ in pairs], inputs, [g for _, g in pairs], allow_unused=True)
        return [None if g is None else g.detach().cpu() for g in grads]

    def callback(self, cb_id, args, kwargs):
        self.reply({"op": "callback", "id": cb_id, "args": self.out(list(args)), "kwargs": self.out(kwargs),
                    "rng": torch.get_rng_state()})
        while True:
            msg = wire.recv(self.fd_in)
            if msg["op"] == "callback_result":
                torch.set_rng_state(msg["rng"])
                return self.into(msg["value"])
            if msg["op"] == "callback_error":
                torch.set_rng_state(msg["rng"])
                raise CallbackFailed(msg["ref"], msg["message"])
            self.reply(self.handle(msg))  # a nested request


_MISSING = object()
_COURSE = tuple(os.path.dirname(__import__(p).__file__) + os.sep for p in ("edgpt", "autograder"))


def from_course(v, depth=0):
    """Whether `v` is, wraps or inherits code of the course's own packages (a
    reference answer): a function or method defined there, a partial or bound
    method of one, a class with such a method, an instance of such a class."""
    import functools

    if depth > 4:
        return False
    code = getattr(v, "__code__", None)
    if code is not None:
        return str(code.co_filename).startswith(_COURSE)
    if isinstance(v, functools.partial):
        return from_course(v.func, depth + 1)
    if hasattr(v, "__func__"):
        return from_course(v.__func__, depth + 1)
    if not isinstance(v, type):
        return from_course(type(v), depth + 1)
    for klass in v.__mro__:
        if klass in (object, nn.Module) or str(getattr(klass, "__module__", "")).startswith(("torch", "builtins")):
            continue
        if str(klass.__module__).startswith(("edgpt", "autograder")):
            return True
        if any(from_course(x, depth + 1) for x in vars(klass).values() if callable(x) or hasattr(x, "__func__")):
            return True
    return False


def _short(e):
    try:
        text = str(e)
    except Exception:  # noqa: BLE001 - a student's exception whose __str__ raises
        text = "(no message)"
    return text if len(text) <= MESSAGE_CHARS else text[:MESSAGE_CHARS] + " [...]"


def _python(source):
    """A cell's source as plain Python (IPython magics become calls that do
    nothing), transformed here in the sandbox, under the cell's time limit."""
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        return TransformerManager().transform_cell(source)
    except Exception:  # noqa: BLE001 - left as is; compiling it reports the error
        return source


def _assign(module, dotted, tensor):
    *path, leaf = dotted.split(".")
    for part in path:
        module = getattr(module, part)
    current = getattr(module, leaf)
    if isinstance(current, torch.Tensor) and current.shape == tensor.shape:
        current.copy_(tensor)
    else:
        setattr(module, leaf, nn.Parameter(tensor.clone()) if isinstance(current, nn.Parameter) else tensor.clone())


class _Callback:
    """Stands in, in the student's process, for a function or model of the grader."""

    @staticmethod
    def make(worker, desc):
        if desc.get("module"):
            obj = _CallbackModule()
        else:
            obj = _Callback()
        object.__setattr__(obj, "_cb_worker", worker)
        object.__setattr__(obj, "_cb_id", desc["id"])
        for k, v in desc.get("attrs", {}).items():
            object.__setattr__(obj, k, worker.into(v))
        return obj

    def __call__(self, *args, **kwargs):
        return self._cb_worker.callback(self._cb_id, args, kwargs)


class _CallbackModule(nn.Module):
    """A model of the grader's: calling it runs the grader's model."""

    def __init__(self):
        super().__init__()
        # Student code often asks a model for its device through a parameter.
        self.anchor = nn.Parameter(torch.zeros(()), requires_grad=False)

    def __setattr__(self, k, v):
        object.__setattr__(self, k, v) if k.startswith("_cb") else super().__setattr__(k, v)

    def forward(self, *args, **kwargs):
        return self._cb_worker.callback(self._cb_id, args, kwargs)


class _NoIPython:
    """`get_ipython()` for cells with magics: they do nothing here."""

    def __getattr__(self, name):
        return lambda *a, **k: None


def zygote(control_fd, confine=True):
    """Fork one worker per request of the grader, from this already-started
    process (see `autograder.sandbox.Zygote`); never run student code here."""
    import signal
    import socket

    from IPython.core.inputtransformer2 import TransformerManager  # noqa: F401 - imported once, here

    from autograder import lockdown

    lockdown.lock_zygote()
    syscall_filter = lockdown.syscall_filter()
    control = socket.socket(fileno=control_fd)
    record = 16
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(control, record, 2)
        except OSError:
            return
        if not msg or len(fds) != 2:
            return
        lockdown.fresh_scratch()
        pid = os.fork()
        if pid == 0:  # the child: one submission
            try:
                os.closerange(3, min(fds))
                os.closerange(max(fds) + 1, 1024)
                os.closerange(min(fds) + 1, max(fds))
                if confine:
                    lockdown.lock(syscall_filter)
                os.chdir(lockdown.SCRATCH)
                hello = {"identity": {**lockdown.identity(), "unreadable": lockdown.unreadable()}}
            except Exception as e:  # noqa: BLE001 - reported to the grader, which refuses to grade
                hello = {"identity": {}, "problem": f"{type(e).__name__}: {e}"}
            try:
                if "problem" not in hello:
                    Worker(fds[0], fds[1]).run(hello)
                else:
                    wire.send(fds[1], {"op": "hello", **hello})
            finally:
                os._exit(0)
        for fd in fds:
            os.close(fd)
        control.sendall(b"ok".ljust(record))
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        # Whatever the child started dies with it (again and again, in case
        # something forked during a sweep); its files go with the next
        # `fresh_scratch`.
        for _ in range(100):
            others = [p for p in os.listdir("/proc") if p.isdigit() and int(p) not in (1, os.getpid())]
            if not others:
                break
            try:
                os.kill(-1, signal.SIGKILL)
            except ProcessLookupError:
                pass
            while True:
                try:
                    if os.waitpid(-1, os.WNOHANG) == (0, 0):
                        break
                except ChildProcessError:
                    break
        control.sendall(f"exit {code}".encode().ljust(record))


def main():
    torch.set_num_threads(1)
    if sys.argv[1] == "--local":  # a student's own check (`validate`): one submission, no sandbox
        Worker(int(sys.argv[2]), int(sys.argv[3])).run({"identity": {"local": True}})
        return
    # `--unconfined` exists for the test that the grader refuses such a worker.
    zygote(int(sys.argv[2]), confine=sys.argv[3:] != ["--unconfined"])


if __name__ == "__main__":
    main()
