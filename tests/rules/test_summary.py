"""jq-compatible rendering of summary templates, checked against jq itself."""

from __future__ import annotations

import jq
import orjson
import pytest

from tetrapipe.event.decode import LineDecoder
from tetrapipe.rules.summary import Template, TemplateError, jq_text

VALUES = [
    None, True, False, 0, -1, 2**63 + 5, 1.5, 1e100, 2.5e20, 1.5e-7, 0.1, 1 / 3, 3.0, "plain", "", "tab\there", 'quote"back\\slash',
    "ünïcødé ✓", "\x1b[31mred\x7f", "line\u2028sep", [], {}, [{"int_arg": -1}, {"int_arg": 0}],
    {"b": 1, "a": [1, "x", None, True]}, {"nested": {"k": "v\n"}},
]


@pytest.mark.parametrize("value", VALUES, ids=[repr(v)[:30] for v in VALUES])
def test_jq_text_matches_jq(value):
    expected = jq.compile('"\\(.v)"').input_value({"v": value}).first()
    assert jq_text(value) == expected


def test_template_renders_like_jq():
    event = {"process_kprobe": {"process": {"binary": "/usr/bin/sudo", "arguments": "id"},
                                "function_name": "__sys_setresuid",
                                "args": [{"int_arg": -1}, {"int_arg": 0}, {"int_arg": -1}]},
             "time": "2023-11-12T22:17:40.754730285Z"}
    text = ("\\(.time) \\(.process_kprobe.process.pod.namespace) \\(.process_kprobe.process.binary) "
            "\\(.process_kprobe.function_name) \\(.process_kprobe.args) \\(.process_kprobe.args[5].int_arg)")
    decoded = LineDecoder().decode(orjson.dumps(event))
    expected = jq.compile(f'"{text}"').input_value(event).first()
    assert Template(text, "t").render(decoded) == expected
    assert expected == ('2023-11-12T22:17:40.754730285Z null /usr/bin/sudo __sys_setresuid '
                        '[{"int_arg":-1},{"int_arg":0},{"int_arg":-1}] null')


def test_template_on_untyped_paths_and_generic_events():
    event = {"process_exec": {"process": {"binary": "/x", "flags": "execve", "pid": "oops",
                                          "pod": {"namespace": "ns", "pod_labels": {"app": "a"}}}}, "time": "t"}
    decoded = LineDecoder().decode(orjson.dumps(event))
    assert isinstance(decoded.root, dict)  # pid as a string does not fit the typed model
    template = Template("\\(.process_exec.process.flags) \\(.process_exec.process.pod) \\(.time)", "t")
    assert template.render(decoded) == 'execve {"namespace":"ns","pod_labels":{"app":"a"}} t'


@pytest.mark.parametrize("text", ["\\(.a | length)", "\\(.a[])", "\\(.a.b + 1)"])
def test_unsupported_template_expressions_are_rejected(text):
    with pytest.raises(TemplateError, match="only simple paths"):
        Template(text, "where")
