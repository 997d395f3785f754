"""The OTLP sink: events as OpenTelemetry log records over gRPC or HTTP."""
