"""The grader's message format: what it carries, and what it refuses."""
import pickle
import struct

import msgpack
import pytest
import torch

from autograder import wire


def test_plain_data_tuples_and_tensors_round_trip():
    value = {"a": [1, 2.5, None, True, "x", b"y", (1, (2, 3))], "t": torch.randn(3, 4),
             "b": torch.randn(2, dtype=torch.bfloat16), "e": torch.zeros(0, 5), "size": torch.Size([2, 3])}
    back = wire.loads(wire.dumps(value)[8:])
    assert back["a"] == value["a"] and isinstance(back["a"][6], tuple)
    assert torch.equal(back["t"], value["t"]) and torch.equal(back["b"], value["b"])
    assert back["e"].shape == (0, 5) and back["size"] == (2, 3)


@pytest.mark.parametrize("name, data, words", [
    ("nested too deep", b"\x91" * (wire.MAX_DEPTH + 5) + b"\xc0", "nested deeper"),
    ("nested 100000 deep", b"\x91" * 100_000 + b"\xc0", "StackError"),
    ("too many elements", msgpack.packb(list(range(wire.MAX_ITEMS + 1))), "max_array_len"),
    ("too many in total", msgpack.packb([list(range(wire.MAX_ITEMS // 2 + 1))] * 2), "more than"),
    ("a string too long", msgpack.packb("x" * (wire.MAX_STRING_BYTES + 1)), "max_str_len"),
    ("tensor bytes short of its shape",
     msgpack.packb(msgpack.ExtType(2, struct.pack("<BBQ", 0, 1, 10**12) + b"abcd")), "sent with 4 bytes"),
    ("tensor of an unknown dtype", msgpack.packb(msgpack.ExtType(2, bytes([200, 0]))), "malformed tensor"),
    ("an unknown extension", msgpack.packb(msgpack.ExtType(9, b"")), "unknown extension"),
    ("integer map keys", msgpack.packb({1: 2}), "map key"),
    ("a pickle with shared references", pickle.dumps([b"x" * 100] * 100), "ExtraData"),
])
def test_malformed_messages_are_refused(name, data, words):
    with pytest.raises(wire.ProtocolError, match=words):
        wire.loads(data)


def test_a_declared_length_past_the_limit_is_refused_before_reading():
    import os

    r, w = os.pipe()
    os.write(w, struct.pack("<Q", 2**40))
    with pytest.raises(wire.ProtocolError, match="a message of"):
        wire.recv(r)
    os.close(r)
    os.close(w)
