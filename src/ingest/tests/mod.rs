//! Tests of the ingest stage: decoding (pure) and both servers (on 127.0.0.1:0).

mod cost;
mod decode;
mod grpc;
mod harness;
mod http;
mod support;
