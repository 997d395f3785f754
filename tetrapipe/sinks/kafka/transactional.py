"""The routed sink and the dead-letter topic inside the worker's Kafka transactions (exactly-once mode).

Same records, same routing, same headers as `KafkaSink` / `KafkaDeadLetter`
(they are subclasses); only where the records go differs: both write through
the one transactional producer of `Transactions`, and a write's return means
"in the open transaction", not "acknowledged" — `Transactions.run` acknowledges
the group by committing (see tetrapipe.sinks.kafka.transactions).
"""

from __future__ import annotations

from collections.abc import Sequence

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
