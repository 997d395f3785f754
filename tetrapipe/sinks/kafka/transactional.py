"""The routed sink and the dead-letter topic inside the worker's Kafka transactions (exactly-once mode).

Same records, same routing, same headers as `KafkaSink` / `KafkaDeadLetter`
(they are subclasses); only where the records go differs: both write through
the one transactional producer of `Transactions`, and a write's return means
"in the open transaction", not "acknowledged" — `Transactions.run` acknowledges
the group by committing (see tetrapipe.sinks.kafka.transactions).
`probe_transactions` is the startup check that the brokers grant transactions.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from tetrapipe.clients.kafka import KafkaConnection
from tetrapipe.event.envelope import Envelope
from tetrapipe.sinks.kafka.config import KafkaDeadLetterConfig, KafkaSinkConfig
from tetrapipe.sinks.kafka.sink import KafkaDeadLetter, KafkaSink
from tetrapipe.sinks.kafka.transactions import Transactions


class TransactionalKafkaSink(KafkaSink):
    def __init__(self, connection: KafkaConnection, config: KafkaSinkConfig, groups: dict[str, str],
                 transactions: Transactions) -> None:
        super().__init__(connection, config, groups)
        self.transactions = transactions

    async def start(self) -> None:
        t = self.config.topics
        self._client = await self.transactions.attach("kafka sink", self.router.topics(), t.create_topics,
                                                      t.partitions, t.replication_factor)

    async def write(self, envelopes: Sequence[Envelope]) -> None:
        await self.transactions.write(envelopes, super().write)

    @property
    def counters(self) -> dict[str, int]:
        """The sink's (records written, committed or not) plus the transactions committed and aborted."""
        return {**super().counters, "transactions_committed": self.transactions.committed,
                "transactions_aborted": self.transactions.aborted}

    async def close(self) -> None:
        if self._client is not None:
            self._client = None
            await self.transactions.release()


class TransactionalDeadLetter(KafkaDeadLetter):
    def __init__(self, connection: KafkaConnection, config: KafkaDeadLetterConfig,
                 transactions: Transactions) -> None:
        super().__init__(connection, config)
        self.transactions = transactions

    async def start(self) -> None:
        t = self.config.topics
        self._client = await self.transactions.attach(self.name, [self.topic], t.create_topics, t.partitions,
                                                      t.replication_factor)

    async def write(self, envelopes: Sequence[Envelope]) -> None:
        await self.transactions.write(envelopes, super().write)

    async def close(self) -> None:
        if self._client is not None:
            self._client = None
            await self.transactions.release()


async def probe_transactions(options: dict[str, Any], transactional_id: str, timeout: float) -> str | None:
    """None when the broker grants `transactional_id` a producer id (InitProducerId); else why not."""
    producer = AIOKafkaProducer(**{**options, "transactional_id": transactional_id, "enable_idempotence": True,
                                   "acks": "all"})
    try:
        await asyncio.wait_for(producer.start(), timeout)
        await asyncio.wait_for(producer.begin_transaction(), timeout)
        await asyncio.wait_for(producer.abort_transaction(), timeout)
    except TimeoutError:
        return f"no transactional producer id within {timeout:g}s (FindCoordinator/InitProducerId unanswered)"
    except (KafkaError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        with contextlib.suppress(TimeoutError, KafkaError, OSError):
            await asyncio.wait_for(producer.stop(), timeout)
    return None
