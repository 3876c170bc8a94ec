"""The code judge's plain-data codec and message framing, which carry every call and reply
between the judge and the candidate: what crosses intact, what is refused (not plain
data, nested too deep, malformed, too large), found by the full mutation run of
assay/envs/code_judge.py (docs/development.md)."""

from __future__ import annotations

import json
import math
import os

import pytest

from assay.envs.code_judge import (
    _LENGTH,
    MAX_DEPTH,
    MAX_MESSAGE,
    _receive,
    _send,
    decode,
    encode,
)

PLAIN = [
    None, True, False, "", "héllo", 0, -7, 2**200, -(2**70), 0.1, -0.0, math.inf, 1e-310,
    3 + 4j, complex(-0.5, 2.0), b"", b"\x00\xff", [], [1, "a"], (), (1, (2, 3)), {1, 2},
    frozenset({"x"}), set(), {}, {"k": [1, 2]}, {(1, 2): {3: None}}, [[[[{"deep": (True,)}]]]],
]


@pytest.mark.parametrize("value", PLAIN, ids=repr)
def test_plain_values_cross_intact_with_their_types(value):
    back = decode(json.loads(json.dumps(encode(value))))
    assert back == value and type(back) is type(value)
    if isinstance(value, float):
        assert math.copysign(1.0, back) == math.copysign(1.0, value)  # -0.0 stays -0.0


def test_nan_crosses_as_nan():
    assert math.isnan(decode(json.loads(json.dumps(encode(float("nan"))))))


@pytest.mark.parametrize("value", [object(), int, range(3), True.__class__.__mro__, type("Sub", (int,), {})(3)])
def test_anything_else_is_refused_by_name(value):
    with pytest.raises(TypeError, match=r"returned a \w+, which is not plain data"):
        encode(value)


def nested(levels: int) -> list:
    value: list = []
    for _ in range(levels):
        value = [value]
    return value


def test_nesting_is_capped_at_max_depth_both_ways():
    assert MAX_DEPTH == 200
    at_cap = nested(MAX_DEPTH)  # the innermost list sits at depth MAX_DEPTH
    assert decode(encode(at_cap)) == at_cap
    with pytest.raises(ValueError, match="nested too deeply"):
        encode(nested(MAX_DEPTH + 1))
    with pytest.raises(ValueError, match="nested too deeply"):
        decode(nested(MAX_DEPTH + 1))  # lists encode as themselves


@pytest.mark.parametrize(
    "data, message",
    [
        (5, "malformed value"),  # a bare number is not an encoding
        ({"i": "1", "f": "2"}, "malformed value"),  # one tag per value
        ({"i": 1}, "malformed value"),  # an int's body is hex text
        ({"c": ["0x1p+0"]}, "unknown tag"),  # a complex needs two parts
        ({"t": "12"}, "malformed value"),  # a tuple's body is a list
        ({"zz": []}, "unknown tag 'zz'"),
    ],
)
def test_malformed_encodings_are_refused(data, message):
    with pytest.raises(ValueError, match=message):
        decode(data)


def test_every_container_tag_decodes_to_its_type():
    assert decode({"s": [{"i": "1"}]}) == {1} and type(decode({"s": []})) is set
    assert type(decode({"fs": []})) is frozenset and type(decode({"t": []})) is tuple
    assert decode({"d": [[{"i": "a"}, "x"]]}) == {10: "x"}


def pipe_with(data: bytes) -> int:
    read, write = os.pipe()
    os.write(write, data)
    os.close(write)
    return read


def test_a_message_crosses_a_pipe_whole():
    read, write = os.pipe()
    _send(write, {"call": [1, 2]})
    os.close(write)
    assert _receive(read) == {"call": [1, 2]}
    os.close(read)


def test_messages_that_arrive_together_are_taken_one_at_a_time():
    read, write = os.pipe()
    _send(write, {"first": 1})
    _send(write, {"second": "x" * 10_000})  # one read takes the first and part of this
    _send(write, {"third": None})
    os.close(write)
    assert [_receive(read), _receive(read), _receive(read)] == [{"first": 1}, {"second": "x" * 10_000}, {"third": None}]
    with pytest.raises(EOFError):
        _receive(read)
    os.close(read)


def test_a_message_over_64_mib_is_refused_before_it_is_read():
    assert MAX_MESSAGE == 64 << 20
    fd = pipe_with(_LENGTH.pack(MAX_MESSAGE + 1))  # only the header: nothing else to wait for
    with pytest.raises(ValueError, match=f"message of {MAX_MESSAGE + 1} bytes is too large"):
        _receive(fd, deadline=None)
    os.close(fd)


def test_a_message_that_is_not_an_object_is_refused():
    body = b"[1, 2]"
    fd = pipe_with(_LENGTH.pack(len(body)) + body)
    with pytest.raises(ValueError, match="malformed message"):
        _receive(fd)
    os.close(fd)


def wrapped(kind: str, levels: int) -> object:
    """A value `levels` deep whose outermost container is `kind`, tuples inside (hashable,
    so that sets and dict keys can hold them)."""
    inner: object = ()
    for _ in range(levels - 1):
        inner = (inner,)
    return {"list": [inner], "tuple": (inner,), "set": {inner}, "frozenset": frozenset({inner}),
            "dict key": {inner: 0}, "dict value": {0: inner}}[kind]


@pytest.mark.parametrize("kind", ["list", "tuple", "set", "frozenset", "dict key", "dict value"])
def test_every_container_counts_one_level_of_nesting(kind):
    at_cap = wrapped(kind, MAX_DEPTH)
    assert decode(json.loads(json.dumps(encode(at_cap)))) == at_cap
    with pytest.raises(ValueError, match="nested too deeply"):
        encode(wrapped(kind, MAX_DEPTH + 1))
    data = json.loads(json.dumps(encode(wrapped(kind, MAX_DEPTH))))  # wrap the encoding once more
    with pytest.raises(ValueError, match="nested too deeply"):
        decode({"t": [data]})
