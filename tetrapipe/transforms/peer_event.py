"""The peer resolver on a decoded event: reads what it needs from the view the pipeline already decoded.

Contract:
- :func:`resolve_decoded` returns ``(peer, source)`` (see ``tetrapipe.transforms.peers``) of a
  connection event whose destination and first socket argument's source address the classifier
  extracted (``Classifier.classify_connection``, one pass over the args). The event's time and its
  own pod's namespace and name are read from the lean view (``LeanEvent``/``LeanBody``; plain dicts
  for an event that fits no model) — no second decode per event. Only a pod the learned index has
  not seen yet has its whole ``process.pod`` (workload, labels) read, from the event's generic
  decode, once per pod.
- Only a ``sock_arg``'s source address teaches the learned index (``peers.socket_source``).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tetrapipe.event.decode import Decoded
from tetrapipe.transforms.peer_learned import pod_itself
from tetrapipe.transforms.peers import PeerResolver, Resolution


def _generic_pod(decoded: Decoded) -> Mapping[str, Any] | None:
    body = decoded.generic_body()
    process = body.get("process") if type(body) is dict else None
    pod = process.get("pod") if type(process) is dict else None
    return pod if type(pod) is dict else None


def resolve_decoded(resolver: PeerResolver, decoded: Decoded, body: Any, daddr: str, dport: int | None,
                    saddr: str | None, owned: bool) -> Resolution:
    """``(peer, source)`` of one decoded connection event; ``saddr``/``owned``: the first socket argument's
    source address and whether it is a ``sock_arg``'s (``Classifier.classify_connection`` read them with
    the destination); see the module docstring."""
    view = decoded.view
    if type(view) is not dict:  # the lean view: attributes
        stamp = view.time
        if saddr is None:
            return resolver.resolve_seen(daddr, dport, None, None, None, stamp)
        process = body.process
        pod = process.pod if process is not None else None
        if pod is None:
            return resolver.resolve_seen(daddr, dport, saddr, None, None, stamp)
        return resolver.resolve_seen(daddr, dport, saddr, pod.namespace, pod.name, stamp, decoded, _generic_pod,
                                     owned)
    stamp = view.get("time")
    stamp = stamp if type(stamp) is str else None
    process = body.get("process") if type(body) is dict else None
    plain = process.get("pod") if type(process) is dict else None
    if saddr is None or type(plain) is not dict:
        return resolver.resolve_seen(daddr, dport, saddr, None, None, stamp)
    return resolver.resolve_seen(daddr, dport, saddr, plain.get("namespace"), plain.get("name"), stamp, plain,
                                 pod_itself, owned)
