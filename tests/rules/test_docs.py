"""docs/library.md is generated from the library and policies, and says what each category does."""

from __future__ import annotations

from pathlib import Path

import msgspec

from tetrapipe.cli.main import main
from tetrapipe.rules.docs import NO_POLICY, categories_markdown, condition_bullets
from tetrapipe.rules.library import Category, Condition, load_library

LIBRARY_MD = Path(__file__).resolve().parents[2] / "docs" / "library.md"


def test_docs_library_md_is_up_to_date(capsys):
    assert main(["categories", "--markdown"]) == 0
    generated = capsys.readouterr().out
    assert LIBRARY_MD.read_text(encoding="utf-8") == generated, (
        "docs/library.md is out of date: run `tetrapipe categories --markdown > docs/library.md`")


def _section(page: str, cid: str) -> str:
    return page.split(f'<a id="{cid}"></a>')[1].split("<a id=")[0]


def test_every_category_section_has_its_parts():
    page = categories_markdown(load_library())
    for cat in load_library():
        section = _section(page, cid=cat.id)
        for part in ("### Description", "### Use case", "### Policy", "### Rule", "### Summary line",
                     "### Example output", cat.description, cat.summary, cat.example):
            assert part in section, f"{cat.id}: {part!r} missing"
        assert "$" not in section.split("### Rule")[1].split("### Summary line")[0], "unresolved $param"


def test_policy_section_names_file_and_policy_or_says_none():
    page = categories_markdown(load_library())
    assert ("[`config/policies/sshd.yaml`](../config/policies/sshd.yaml), TracingPolicy `accept`."
            in _section(page, "ssh"))
    assert NO_POLICY in _section(page, "sudo")
    suid = _section(page, "suid")
    assert NO_POLICY in suid and "### Requirement" in suid and "enable-process-cred" in suid


def test_rule_of_a_category_reads_as_bullets():
    page = categories_markdown(load_library())
    assert ("- the event type is `process_kprobe`\n"
            "- any of:\n"
            "  - `function_name` equals `security_kernel_module_request`\n"
            "  - all of:\n"
            "    - `function_name` equals `security_kernel_read_file`\n"
            "    - `args[1].int_arg` equals `2` (params.reading_module)\n") in _section(page, "kernel-module")
    assert "When `args[0].sockaddr_arg` is present, instead:" in _section(page, "egress")


def test_condition_bullets_cover_every_operator_and_negation():
    cond = msgspec.convert({"event": ["process_exec", "process_kprobe"], "any": [
        {"field": "process.binary", "suffix": ["sh"], "not": {"field": "process.binary", "contains": "$bad"}},
        {"field": "process.arguments", "regex": "^-c"},
        {"field": "process.pod", "present": False},
        {"field": "tetrapipe.egress.zone", "in": ["public"]}]}, Condition)
    assert condition_bullets(cond, {"bad": ["busy", "toy"]}) == [
        "- the event type is one of `process_exec`, `process_kprobe`",
        "- any of:",
        "  - all of:",
        "    - `process.binary` ends with `sh`",
        "    - not:",
        "      - `process.binary` contains one of `busy`, `toy` (params.bad)",
        "  - `process.arguments` matches the regular expression `^-c`",
        "  - `process.pod` is absent",
        "  - `tetrapipe.egress.zone` is `public`",
    ]


def test_a_policy_that_is_not_shipped_is_not_linked():
    cat = Category(id="mine", group="x", match=Condition(event="process_kprobe"), policy="my-policy")
    assert "TracingPolicy `my-policy` (not shipped with tetrapipe)." in categories_markdown([cat], {})
