"""One decode per event: tagging and summarising with the shipped library reads only the one decoded view.

The full typed model (`Decoded.root`) is decoded lazily on first access; after tagging an event of
every synthetic scenario (its summaries included), it must never have been asked for.
"""

from __future__ import annotations

import pytest

from tests.support import synth
from tetrapipe.event.decode import LineDecoder
from tetrapipe.rules.library import load_library
from tetrapipe.transforms.classify import Classifier
from tetrapipe.transforms.tag import Tagger


@pytest.mark.parametrize("scenario", sorted(synth.SCENARIOS))
def test_tagging_decodes_each_event_once(scenario: str) -> None:
    tagged = _tag_all(scenario)
    if scenario in _TAGGING:
        assert tagged, f"{scenario}: the scenario should tag some events"


# scenarios whose events the shipped library tags (a check that the test above exercises summaries)
_TAGGING = ("ebpf", "kmod", "library", "tmp_exec", "sudo", "suid", "setuid", "ssh", "egress")


def _tag_all(scenario: str) -> int:
    tagger = Tagger(load_library())
    classify = Classifier(pod_cidrs=["10.244.0.0/16"], service_cidrs=["10.96.0.0/12"]).classify
    decoder = LineDecoder()
    tagged = 0
    for line in synth.generate(200, seed=7, mix={scenario: 1.0}):
        decoded = decoder.decode(line)
        assert decoded is not None
        if decoded.vbody is not None and type(decoded.vbody) is not dict:
            decoded.egress = classify(decoded.vbody)
        tags = tagger.tag(decoded)
        tagged += bool(tags.categories)
        if type(decoded.view) is not dict:  # a generic view is the one decode of an event that fits no model
            assert decoded._root is None, f"{scenario}: {tags.categories} decoded the full model a second time"
    return tagged
