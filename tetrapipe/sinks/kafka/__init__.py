"""The Kafka sink: routed topics, keys and headers; the Kafka dead-letter topic."""
