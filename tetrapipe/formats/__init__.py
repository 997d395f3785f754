"""Output formats: a processed event -> the bytes (or OTLP record) a sink sends."""
