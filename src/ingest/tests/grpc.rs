//! OTLP/gRPC server tests through the generated tonic clients.

use bytes::{Buf, BufMut};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use prost::Message;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use super::harness::*;
use super::http::request_of_size;
use super::support::*;
use crate::ingest::RejectReason;

async fn client(h: &Harness) -> TraceServiceClient<Channel> {
    TraceServiceClient::connect(format!("http://{}", h.addr))
        .await
        .unwrap()
        .max_encoding_message_size(usize::MAX)
        .max_decoding_message_size(usize::MAX)
}

#[tokio::test]
async fn export_is_accepted_and_handed_off() {
    let h = start_grpc(limits(1 << 20)).await;
    let resp = client(&h)
        .await
        .export(traces(vec![wire_span(1, 0), wire_span(2, 1)]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.partial_success, None);
    assert_eq!(h.handed_span_names(), ["span-1", "span-2"]);
    assert_eq!(h.received("grpc"), 2);
}

#[tokio::test]
async fn invalid_spans_give_partial_success() {
    let h = start_grpc(limits(1 << 20)).await;
    let mut zero_span = wire_span(2, 1);
    zero_span.span_id = vec![0; 8];
    let mut short_trace = wire_span(3, 1);
    short_trace.trace_id = vec![9; 15];
    let resp = client(&h)
        .await
        .export(traces(vec![wire_span(1, 0), zero_span, short_trace]))
        .await
        .unwrap()
        .into_inner();
    let partial = resp.partial_success.unwrap();
    assert_eq!(partial.rejected_spans, 2);
    assert!(
        partial
            .error_message
            .contains("invalid span_id: span_id is all zero"),
        "{}",
        partial.error_message
    );
    assert_eq!(h.handed_span_names(), ["span-1"]);
    assert_eq!(h.rejected(RejectReason::InvalidSpanId), 1);
    assert_eq!(h.rejected(RejectReason::InvalidTraceId), 1);
}

#[tokio::test]
async fn empty_request_succeeds() {
    let h = start_grpc(limits(1 << 20)).await;
    let resp = client(&h)
        .await
        .export(traces(Vec::new()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.partial_success, None);
    assert!(h.handed_span_names().is_empty());
}

/// Sends arbitrary bytes as the request message of `TraceService/Export`.
#[derive(Default)]
struct RawCodec;

struct RawEncoder;
struct ResponseDecoder;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = ExportTraceServiceResponse;
    type Encoder = RawEncoder;
    type Decoder = ResponseDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> ResponseDecoder {
        ResponseDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for ResponseDecoder {
    type Item = ExportTraceServiceResponse;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        ExportTraceServiceResponse::decode(bytes)
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }
}

pub(super) async fn export_raw(h: &Harness, body: Vec<u8>, gzip: bool) -> Result<(), Status> {
    let channel = Channel::from_shared(format!("http://{}", h.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel).max_encoding_message_size(usize::MAX);
    if gzip {
        grpc = grpc.send_compressed(CompressionEncoding::Gzip);
    }
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    );
    grpc.unary(tonic::Request::new(body), path, RawCodec)
        .await
        .map(|_| ())
}

#[tokio::test]
async fn garbage_and_truncated_protobuf_are_invalid_argument() {
    let h = start_grpc(limits(1 << 20)).await;
    let err = export_raw(&h, vec![0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2], false)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let body = traces(vec![wire_span(1, 0)]).encode_to_vec();
    let err = export_raw(&h, body[..body.len() - 3].to_vec(), false)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert_eq!(h.rejected(RejectReason::Undecodable), 2);
    // A valid body through the same raw path is fine.
    export_raw(&h, body, false).await.unwrap();
    assert_eq!(h.handed_span_names(), ["span-1"]);
}

#[tokio::test]
async fn the_same_batch_resent_is_accepted_each_time() {
    let h = start_grpc(limits(1 << 20)).await;
    let mut client = client(&h).await;
    let req = traces(vec![wire_span(1, 0), wire_span(2, 1)]);
    for _ in 0..3 {
        let resp = client.export(req.clone()).await.unwrap().into_inner();
        assert_eq!(resp.partial_success, None);
    }
    assert_eq!(h.handed_span_names().len(), 6);
}

#[tokio::test]
async fn odd_timestamps_and_reserved_flags_are_accepted() {
    let h = start_grpc(limits(1 << 20)).await;
    let mut backwards = wire_span(1, 0);
    backwards.start_time_unix_nano = 10;
    backwards.end_time_unix_nano = 5;
    backwards.flags = 0xffff_ff00;
    let mut zero = wire_span(2, 1);
    zero.start_time_unix_nano = 0;
    zero.end_time_unix_nano = 0;
    client(&h)
        .await
        .export(traces(vec![backwards, zero]))
        .await
        .unwrap();
    assert_eq!(h.handed_span_names(), ["span-1", "span-2"]);
}

#[tokio::test]
async fn message_at_the_limit_passes_and_one_byte_over_is_resource_exhausted() {
    let limit = 64 * 1024;
    let h = start_grpc(limits(limit)).await;
    let at = ExportTraceServiceRequestOf(request_of_size(limit));
    let over = ExportTraceServiceRequestOf(request_of_size(limit + 1));
    let mut client = client(&h).await;
    client.export(at.decode()).await.unwrap();
    let err = client.export(over.decode()).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert_eq!(h.handed_span_names(), ["span-1"]);
    assert_eq!(h.rejected(RejectReason::TooLarge), 1);
}

/// A request kept as its encoding, so its size is known exactly.
struct ExportTraceServiceRequestOf(Vec<u8>);

impl ExportTraceServiceRequestOf {
    fn decode(
        &self,
    ) -> opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
        Message::decode(&self.0[..]).unwrap()
    }
}

#[tokio::test]
async fn gzip_bomb_is_resource_exhausted() {
    let limit = 1 << 20;
    let h = start_grpc(limits(limit)).await;
    // 16 MiB of zeros, gzipped by the client to a few KB: over the limit only after
    // decompression.
    let err = export_raw(&h, vec![0u8; 16 << 20], true).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert_eq!(h.rejected(RejectReason::TooLarge), 1);
    assert!(h.handed_span_names().is_empty());
}

#[tokio::test]
async fn overloaded_pipeline_is_unavailable_with_retry_info() {
    let h = start_grpc(limits(1 << 20)).await;
    h.set_overloaded(true);
    let mut client = client(&h).await;
    let err = client
        .export(traces(vec![wire_span(1, 0), wire_span(2, 1)]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    let retry = err.get_details_retry_info().expect("RetryInfo detail");
    assert_eq!(retry.retry_delay, Some(RETRY_AFTER));
    assert!(h.handed_span_names().is_empty());
    assert_eq!(h.rejected(RejectReason::Overloaded), 2);

    h.set_overloaded(false);
    client.export(traces(vec![wire_span(1, 0)])).await.unwrap();
    assert_eq!(h.handed_span_names(), ["span-1"]);
}

#[tokio::test]
async fn logs_service_hands_off_log_events() {
    let h = start_grpc(limits(1 << 20)).await;
    let mut client = LogsServiceClient::connect(format!("http://{}", h.addr))
        .await
        .unwrap();
    let record = LogRecord {
        trace_id: TRACE.to_vec(),
        span_id: span_id(1),
        event_name: "gen_ai.evaluation.result".into(),
        ..Default::default()
    };
    let mut bad = record.clone();
    bad.span_id = vec![5; 2];
    let resp = client
        .export(logs(vec![record, bad]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.partial_success.unwrap().rejected_log_records, 1);
    assert_eq!(h.handed_logs(), 1);
    assert_eq!(h.received("grpc"), 1);
}

#[tokio::test]
async fn gzip_and_zstd_requests_are_accepted() {
    let h = start_grpc(limits(1 << 20)).await;
    for encoding in [CompressionEncoding::Gzip, CompressionEncoding::Zstd] {
        let mut client = client(&h).await.send_compressed(encoding);
        client.export(traces(vec![wire_span(1, 0)])).await.unwrap();
    }
    assert_eq!(h.handed_span_names(), ["span-1", "span-1"]);
}
