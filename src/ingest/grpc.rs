//! OTLP/gRPC receiver.
