"""Hostile input lines: the shapes that once stopped a run (issue 10), built on demand.

Every builder returns one line (no newline).  `in_every_wrapper(line)` gives the same hostile
payload in each form tetrapipe accepts — raw, a Fluent Bit `log` string and object, a Vector
`message`, a CRI `F` line and a CRI `P`+`F` pair — so a test covers every decode path.
"""

from __future__ import annotations

import orjson

from tests.support.synth import generate, wrap_cri, wrap_fluentbit, wrap_object, wrap_vector

DEEP = 5000  # levels: about 10 KB, far past any sane limit and past CPython's recursion limit


def deep_object(levels: int = DEEP) -> bytes:
    """`{"a":{"a":…1…}}` nested `levels` deep."""
    return b'{"a":' * levels + b"1" + b"}" * levels


def deep_array(levels: int = DEEP) -> bytes:
    """`[[[…]]]` nested `levels` deep."""
    return b"[" * levels + b"]" * levels


def deep_field_in_event(levels: int = DEEP, seed: int = 0) -> bytes:
    """An otherwise valid Tetragon event with one deeply nested field."""
    event = next(generate(1, seed, {"exec": 1}))
    return event[:-1] + b',"extra":' + deep_object(levels) + b"}"


def in_every_wrapper(line: bytes) -> dict[str, list[bytes]]:
    """`line` as each accepted input form: name -> the input lines that carry it (CRI P+F: two)."""
    half = len(line) // 2
    return {
        "raw": [line],
        "fluentbit_string": [wrap_fluentbit(line)],
        "fluentbit_object": [wrap_object(line, "log")],
        "vector_string": [wrap_vector(line)],
        "vector_object": [wrap_object(line, "message")],
        "cri_full": [wrap_cri(line)],
        "cri_partial": [wrap_cri(line[:half]).replace(b" F ", b" P ", 1), wrap_cri(line[half:])],
    }


def json_string(line: bytes) -> bytes:
    """`line` as a JSON string literal (for building envelopes by hand)."""
    return orjson.dumps(line.decode())
