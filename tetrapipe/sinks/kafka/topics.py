"""Output topics at startup: created when missing, or — creation disabled — a startup error naming them.

Never a silent stall: without this, a producer to a missing topic (on a
cluster without auto-creation) waits for metadata until it times out, batch
after batch.  Several replicas starting together may race to create the same
topic; "already exists" is success.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from tetrapipe.clients.kafka import KafkaConnection

_TOPIC_ALREADY_EXISTS = 36


class MissingTopicError(KafkaError):
    """Output topics do not exist and may not be created."""

    retriable = False


async def ensure_topics(connection: KafkaConnection, topics: Sequence[str], *, create: bool, partitions: int,
                        replication_factor: int, timeout_s: float = 30.0) -> list[str]:
    """Make sure every topic exists; return the ones created. Raises MissingTopicError or KafkaError."""
    admin = AIOKafkaAdminClient(**connection.client_options())
    try:
        await admin.start()
        missing = sorted(set(topics) - set(await admin.list_topics()))
        if not missing:
            return []
        if not create:
            raise MissingTopicError(f"output topic(s) {', '.join(missing)} do not exist and topic creation "
                                    "is disabled (kafka.sink.topics.create_topics: false); create them first")
        response = await admin.create_topics([NewTopic(t, partitions, replication_factor) for t in missing],
                                             timeout_ms=int(timeout_s * 1000))
        for name, code, *rest in response.topic_errors:
            if code not in (0, _TOPIC_ALREADY_EXISTS):
                message = rest[0] if rest and rest[0] else f"error code {code}"
                raise KafkaError(f"creating topic {name} failed: {message}")
        await _wait_visible(admin, missing, timeout_s)
        return missing
    finally:
        await admin.close()


async def _wait_visible(admin: AIOKafkaAdminClient, topics: list[str], timeout_s: float) -> None:
    """Return once metadata shows every partition of `topics` with a leader (bounded by `timeout_s`)."""
    for _attempt in range(int(timeout_s / 0.1)):
        described = await admin.describe_topics(topics)
        if all(t["error_code"] == 0 and t["partitions"] and all(p["leader"] >= 0 for p in t["partitions"])
               for t in described):
            return
        await asyncio.sleep(0.1)
    raise KafkaError(f"topics {', '.join(topics)} created but not visible after {timeout_s:.0f}s")
