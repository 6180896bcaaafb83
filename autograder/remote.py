"""The trusted side of a sandboxed grading session.

The test cells of an assignment run here, in the grader's own process, with
the grader's own `torch`. The names a student's cells define are stand-ins
that forward each use to the sandboxed worker (`autograder.worker`):

- a student's function becomes a `RemoteFunction`: calling it sends the
  arguments, the student's code runs in the sandbox, the result comes back as
  data (tensors, numbers, lists);
- a student's `nn.Module` becomes a mirror with the same submodules and
  parameters: PyTorch's own layers (`nn.Linear`, `nn.LayerNorm`, ...) and
  the course's (`edgpt`) are rebuilt here as real ones from the grader's own
  code, the student's classes forward their calls (and their current
  weights) to the sandbox;
- a function or model of the test passed to the student's code (a decoding
  step, a toy language model) stays here: the student's code calls it back.

So the tests are the assignment's own test cells, unchanged, and whether they
pass depends only on values the student's code returned, checked by code the
student's process cannot reach. Global RNG state and `torch.Generator`
arguments are kept in step on both sides, tensor arguments a student's
function modifies are modified here too, and gradients flow back through a
student's function when a test asks for them.
"""
import builtins
import functools
import itertools

import torch
from torch import nn

from autograder import wire


class KernelDied(BaseException):
    """The worker is gone (crash, limit, time-out): the remaining tests score 0.

    A BaseException, so a test's `except Exception` cannot swallow it."""


class RemoteError(Exception):
    """An exception of a class the student's code defined or PyTorch raised."""


# What a mirror of PyTorch's own layers takes from the student's side besides
# weights: the configuration their forward passes read.
TORCH_CONFIG = {"in_features", "out_features", "normalized_shape", "eps", "elementwise_affine", "num_embeddings",
                "embedding_dim", "padding_idx", "max_norm", "norm_type", "scale_grad_by_freq", "sparse", "p",
                "inplace", "approximate", "dim"}


def _plain_name(k):
    return isinstance(k, str) and k.isidentifier() and not k.startswith("_")


def _plain(v):
    if isinstance(v, tuple):
        return all(_plain(x) for x in v)
    return v is None or isinstance(v, (bool, int, float, str))


class InputModified(AssertionError):
    """A student's function changed a tensor it was given."""


class CourseCode(Exception):
    """A graded name bound to the course's own implementation."""


COURSE_MESSAGE = "uses the course's implementation instead of your own"


_error_classes = {}
MESSAGE_CHARS = 1000       # of an error message from the student's process
MAX_HASHED_KEYS = 1000     # non-string dict keys in one value (their hashes are not randomised)


def _exception(kind, message, builtin):
    kind, message = str(kind)[:100], str(message)
    if len(message) > MESSAGE_CHARS:
        message = message[:MESSAGE_CHARS] + " [...]"
    cls = getattr(builtins, kind, None) if builtin else None
    if not (isinstance(cls, type) and issubclass(cls, Exception)):
        cls = _error_classes.get(kind) or RemoteError
        if cls is RemoteError and len(_error_classes) < 1000 and kind.isidentifier():
            cls = _error_classes[kind] = type(kind, (RemoteError,), {})
    return cls(message)


class Session:
    """One student's sandboxed worker, seen from the grader."""

    def __init__(self, process, fd_to, fd_from, budget_end=None, budget=None, course_modules=()):
        self.process, self.fd_to, self.fd_from = process, fd_to, fd_from
        self.course_modules = set(course_modules)  # the edgpt modules the released notebook imports
        self.deadline = None        # time.monotonic() value for the current cell
        self.budget_end, self.budget = budget_end, budget  # the whole submission's
        self.callbacks = {}         # id -> the grader's own function or model
        self.references = {}        # id -> name, of the reference functions ever substituted
        self.live = set()           # ids of those substituted now
        self.callback_errors = {}   # id -> exception a callback raised
        self.generators = {}        # key -> torch.Generator passed to the student's code
        self.mirrors = {}           # worker id -> mirror module
        self.params = {}            # worker parameter key -> mirror Parameter (tied weights)
        self.calls = itertools.count()

    # ------------------------------------------------------------- channel
    def start(self, timeout):
        """The next cell's deadline: its own time limit, within the submission's budget."""
        import time

        self.deadline = time.monotonic() + timeout
        if self.budget_end is not None:
            self.deadline = min(self.deadline, self.budget_end)

    def _timed_out(self):
        import time

        if self.budget_end is not None and time.monotonic() >= self.budget_end:
            return f"stopped: the submission used up its time budget of {self.budget:g} s"
        return "timed out: the code did not finish in the time allowed"

    def malformed(self, e):
        """The student's process sent something the protocol does not allow:
        it is stopped, and what had not run scores 0."""
        self.process.kill()
        return KernelDied(f"the submission's process sent malformed data ({type(e).__name__}: {str(e)[:200]})")

    def checked(self, fn, *args):
        """`fn(*args)` on data from the student's process; any failure to make
        sense of it is `malformed`."""
        try:
            return fn(*args)
        except KernelDied:
            raise
        except Exception as e:  # noqa: BLE001 - whatever the data was, it was not well-formed
            raise self.malformed(e) from None

    def request(self, msg):
        msg["rng"] = torch.get_rng_state()
        try:
            wire.send(self.fd_to, msg)
            while True:
                reply = wire.recv(self.fd_from, self.deadline)
                if not isinstance(reply, dict):
                    raise wire.ProtocolError("a reply that is not a map")
                if reply.get("op") != "callback":
                    break
                self._serve_callback(reply)
        except (BrokenPipeError, wire.WorkerGone):
            raise KernelDied(self.process.death_reason()) from None
        except wire.Deadline:
            self.process.kill()
            raise KernelDied(self._timed_out()) from None
        except KernelDied:
            raise
        except Exception as e:  # noqa: BLE001 - a protocol error, or a malformed callback request
            raise self.malformed(e) from None
        self.checked(self._sync, reply)
        op = reply.get("op")
        if op == "result" and "value" in reply:
            return reply["value"]
        if op == "callback_failed" and reply.get("ref") in self.callback_errors:
            raise self.callback_errors.pop(reply["ref"])
        if op == "error":
            raise _exception(reply.get("type"), reply.get("message"), reply.get("builtin") is True)
        raise self.malformed(wire.ProtocolError(f"an unknown reply {str(op)[:40]!r}"))

    def _sync(self, reply):
        torch.set_rng_state(reply["rng"])
        for key, state in reply.get("generators", {}).items():
            if key in self.generators:
                self.generators[key].set_state(state)

    def _serve_callback(self, msg):
        """Run the grader's function the student's code called; a malformed
        request raises here, inside `request`, which stops the student's process."""
        torch.set_rng_state(msg["rng"])
        fn = self.callbacks[msg["id"]]
        if msg["id"] in self.references and msg["id"] not in self.live:
            fn = functools.partial(_refuse_reference, self.references[msg["id"]])
        args, kwargs = self.decode(msg["args"]), self.decode(msg["kwargs"])
        if not isinstance(args, list) or not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
            raise wire.ProtocolError("malformed callback arguments")
        try:
            value = fn(*args, **kwargs)
            reply = {"op": "callback_result", "value": self.encode(value)}
        except Exception as e:  # noqa: BLE001 - handed back to the student's code, re-raised here later
            ref = next(self.calls)
            self.callback_errors[ref] = e
            reply = {"op": "callback_error", "ref": ref, "message": f"{type(e).__name__}: {str(e)[:MESSAGE_CHARS]}"}
        reply["rng"] = torch.get_rng_state()
        wire.send(self.fd_to, reply)

    # ------------------------------------------------------------ encoding
    def encode(self, v):
        """A value of the grader's, as data for the worker."""
        if isinstance(v, torch.Tensor):
            return v.detach().cpu()
        if v is None or isinstance(v, (int, float, bool, str)):
            return v
        if isinstance(v, (list, tuple)):
            items = [self.encode(x) for x in v]
            return items if isinstance(v, list) else tuple(items)
        if isinstance(v, dict):
            return {"__t__": "dict", "items": [(k, self.encode(x)) for k, x in v.items()]}
        if isinstance(v, torch.Generator):
            key = str(id(v))  # map keys on the wire are strings
            self.generators[key] = v
            return {"__t__": "gen", "key": key, "state": v.get_state()}
        if isinstance(v, torch.dtype):
            return {"__t__": "dtype", "name": str(v).replace("torch.", "")}
        rid = getattr(v, "_rid", None)
        if rid is not None:  # one of the student's objects
            ref = {"__t__": "ref", "id": rid}
            if isinstance(v, nn.Module):
                ref["state"] = {k: t.detach().cpu() for k, t in v.state_dict().items()}
                ref["training"] = v.training
            return ref
        if callable(v):  # the grader's function or model: the student's code calls back
            key = id(v)
            self.callbacks[key] = v
            attrs = {k: self.encode(x) for k, x in vars(v).items()
                     if not k.startswith("_") and isinstance(x, (int, float, bool, str, type(None)))
                     } if hasattr(v, "__dict__") else {}
            return {"__t__": "cb", "id": key, "module": isinstance(v, nn.Module), "attrs": attrs}
        raise TypeError(f"cannot pass a {type(v).__name__} to the student's code")

    def decode(self, v):
        """A value from the worker, as an object here."""
        if isinstance(v, (list, tuple)):
            items = [self.decode(x) for x in v]
            return items if isinstance(v, list) else tuple(items)
        if not isinstance(v, dict) or "__t__" not in v:
            return v
        t = v["__t__"]
        if t == "dict":
            items = [(k, self.decode(x)) for k, x in v["items"]]
            if sum(not isinstance(k, str) for k, _ in items) > MAX_HASHED_KEYS:
                raise wire.ProtocolError(f"a dict with more than {MAX_HASHED_KEYS} keys that are not strings")
            return dict(items)
        if t == "module":
            return self._mirror(v)
        if t == "class":
            return RemoteClass(self, v["id"], str(v["name"]), v.get("course") is True)
        if t == "function":
            return RemoteFunction(self, v["id"], str(v["name"]), v.get("course") is True)
        if t == "object":
            return RemoteObject(self, v["id"], str(v["class"]), v.get("course") is True)
        if t == "gen":
            g = self.generators.get(v["key"]) or torch.Generator()
            g.set_state(v["state"])
            return g
        if t == "cb":
            return self.callbacks[v["id"]]
        if t == "dtype":
            return getattr(torch, str(v["name"]))
        raise wire.ProtocolError(f"unknown value {t!r}")

    def _mirror(self, desc):
        m = self.mirrors.get(desc["id"])
        if m is None:
            name = str(desc["class"])
            if desc.get("local_class"):
                cls = wire.local_class(desc["local_class"], self.course_modules)
            else:
                cls = type(name, (RemoteModule,), {"__qualname__": name, "_remote_class_id": desc.get("class_id")})
            m = cls.__new__(cls)
            nn.Module.__init__(m)
            object.__setattr__(m, "_rid", desc["id"])
            object.__setattr__(m, "_session", self)
            object.__setattr__(m, "_methods", set(desc.get("methods", ())))
            names = [*desc["params"], *desc["buffers"], *desc["children"]]
            if not all(_plain_name(n) and not hasattr(cls, n) for n in names):
                raise wire.ProtocolError("a submodule, parameter or buffer under a name the mirror's class uses")
            for pname, p in desc["params"].items():
                if p is None:
                    m.register_parameter(pname, None)
                    continue
                if p["key"] not in self.params:
                    self.params[p["key"]] = nn.Parameter(p["t"].clone(), requires_grad=bool(p["rg"]))
                m.register_parameter(pname, self.params[p["key"]])
            for bname, b in desc["buffers"].items():
                m.register_buffer(bname, None if b is None else b.clone())
            for cname, child in desc["children"].items():
                m.add_module(cname, None if child is None else self._mirror(child))
            self.mirrors[desc["id"]] = m
        self._update(m, desc)
        return m

    def _update(self, m, desc):
        """Attributes a forward pass may have set (attention weights, counters):
        plain values and tensors only, under names that shadow nothing the
        mirror's class defines (so never `forward`, `__call__`, `state_dict`),
        and for PyTorch's own layers only their configuration (`TORCH_CONFIG`)."""
        torch_layer = type(m).__module__.startswith("torch.")
        for k, v in desc["attrs"].items():
            if not _plain_name(k) or hasattr(type(m), k) or (torch_layer and k not in TORCH_CONFIG):
                continue
            if isinstance(v, torch.Tensor):
                setattr(m, k, v.clone())
            elif _plain(v):
                setattr(m, k, v)
        object.__setattr__(m, "training", desc["training"] is True)
        for cname, child in desc["children"].items():
            if child is not None and m._modules.get(cname) is not None:
                self._update(m._modules[cname], child)

    # ---------------------------------------------------------------- calls
    def exec_cell(self, source, name):
        reply = self.request({"op": "exec", "source": source, "name": name})
        return self.checked(self._names, reply)

    def _names(self, reply):
        names = {}
        for k, v in reply["names"].items():
            if not isinstance(k, str):
                raise wire.ProtocolError("a name that is not a string")
            try:
                names[k] = self.decode(v)
            except Exception:  # noqa: BLE001 - a name that cannot be mirrored is left out
                continue
        return reply["error"], names

    def call(self, target, args, kwargs, method=None):
        leaves = wire.tensor_leaves(args, kwargs)
        slots = [i for i, t in enumerate(leaves) if t.requires_grad]
        msg = {"op": "call", "id": target._rid, "method": method, "target": self.encode(target),
               "args": self.encode(list(args)), "kwargs": self.encode(kwargs)}
        if slots and torch.is_grad_enabled():
            return _RemoteCall.apply(self, msg, slots, *[leaves[i] for i in slots])
        return self._finish_call(self.request(msg), target, leaves)

    def _finish_call(self, reply, target, leaves):
        # The test's tensors are never changed: a student's function that
        # changed one of them fails the test that called it, right there (a
        # failure of that test, not malformed data: the process goes on).
        if not isinstance(reply, dict):
            raise self.malformed(wire.ProtocolError("a call's reply that is not a map"))
        changed = self.checked(lambda: [i for i, (mine, theirs) in enumerate(zip(leaves, reply["mutated"]))
                                        if not _same(mine, theirs)])
        if changed:
            raise InputModified(f"{getattr(target, '__name__', type(target).__name__)} modified the input in place "
                                f"(tensor argument {changed[0] + 1}): leave its inputs unchanged")
        if reply.get("module"):
            self.checked(self._update, self.mirrors.get(target._rid) or target, reply["module"])
        return self.checked(self.decode, reply["value"])

    def substitute(self, functions):
        """In the student's process, bind `functions` (the grader's reference
        implementations, called back, never sent) until `restore`. Only then
        do they answer: student code that kept one for later (to pass it off
        as its own answer) gets `CourseCode` when it calls it."""
        names = {k: self.encode(f) for k, f in functions.items()}
        self.references.update({v["id"]: k for k, v in names.items()})
        self.live = {v["id"] for v in names.values()}
        self.request({"op": "substitute", "names": names})

    def restore(self):
        self.live = set()
        self.request({"op": "restore"})


def _refuse_reference(name, *args, **kwargs):
    raise CourseCode(f"{name} {COURSE_MESSAGE}")


def _same(mine, theirs):
    if not isinstance(theirs, torch.Tensor) or mine.shape != theirs.shape or mine.dtype != theirs.dtype:
        return False
    if torch.equal(mine, theirs):
        return True
    return mine.is_floating_point() and bool(((mine == theirs) | (mine.isnan() & theirs.isnan())).all())


class _RemoteCall(torch.autograd.Function):
    """A student's function on tensors that need gradients: the backward pass
    runs in the sandbox on the graph the forward pass built there."""

    @staticmethod
    def forward(ctx, session, msg, slots, *inputs):
        ctx.session, ctx.call = session, next(session.calls)
        msg.update(grad_slots=slots, call=ctx.call)
        reply = session.request(msg)
        value = session.checked(session.decode, reply["value"] if isinstance(reply, dict) else None)
        outputs = value if isinstance(value, tuple) else (value,)
        if not all(isinstance(o, torch.Tensor) for o in outputs):
            raise TypeError("a differentiable call must return tensors")
        ctx.n_outputs = len(outputs)
        flags = session.checked(lambda: [bool(x) for x in reply["requires_grad"]])
        frozen = [o for o, rg in zip(outputs, flags) if not rg]
        ctx.mark_non_differentiable(*frozen)
        return value

    @staticmethod
    def backward(ctx, *grads):
        reply = ctx.session.request({"op": "backward", "call": ctx.call, "grads": list(grads)})
        if not isinstance(reply, list) or not all(g is None or isinstance(g, torch.Tensor) for g in reply):
            raise ctx.session.malformed(wire.ProtocolError("gradients that are not tensors"))
        return (None, None, None, *reply)


class RemoteFunction:
    """A student's function: calling it runs it in the sandbox."""

    def __init__(self, session, rid, name, course=False):
        self._session, self._rid, self.__name__, self._course = session, rid, name, course

    def __call__(self, *args, **kwargs):
        return self._session.call(self, args, kwargs)

    def __repr__(self):
        return f"<student's function {self.__name__}>"


class RemoteClass(RemoteFunction):
    """A student's class: calling it builds an instance in the sandbox;
    `isinstance(mirror, cls)` holds for the mirrors of its instances."""

    def __instancecheck__(self, obj):
        return getattr(type(obj), "_remote_class_id", None) == self._rid

    def __repr__(self):
        return f"<student's class {self.__name__}>"


class RemoteObject:
    """Any other object of the student's: attributes are read from the sandbox."""

    def __init__(self, session, rid, class_name, course=False):
        object.__setattr__(self, "_session", session)
        object.__setattr__(self, "_rid", rid)
        object.__setattr__(self, "_class", class_name)
        object.__setattr__(self, "_course", course)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        reply = self._session.request({"op": "getattr", "id": self._rid, "name": name})
        return self._session.checked(self._session.decode, reply)

    def __call__(self, *args, **kwargs):
        return self._session.call(self, args, kwargs)


class RemoteModule(nn.Module):
    """Mirror of a student's `nn.Module`: its forward pass (and any other
    method of the student's class) runs in the sandbox on this mirror's
    current weights."""

    def forward(self, *args, **kwargs):
        return self._session.call(self, args, kwargs)

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name in self.__dict__.get("_methods", ()):
                return lambda *a, **k: self._session.call(self, a, k, method=name)
            raise
