"""The Kafka source: a consumer-group member that commits only acknowledged offsets."""
