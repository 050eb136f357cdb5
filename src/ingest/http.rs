//! OTLP/HTTP receiver.
