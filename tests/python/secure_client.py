"""Sends one small agent trace to faultline over TLS with the real OpenTelemetry Python
SDK exporters, optionally with a bearer token and a client certificate.

Usage: secure_client.py --protocol grpc|http --endpoint https://HOST:PORT --ca-file FILE
       [--token TOKEN] [--client-cert FILE --client-key FILE] [--service NAME]

The spans are recorded in memory, then handed to the real OTLP exporter's export() so
that its result is known. Prints one JSON object: {"trace_id": "<32 hex>", "result":
"SUCCESS" | "FAILURE"}.
"""

import argparse
import json

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode


def read(path):
    with open(path, "rb") as f:
        return f.read()


def exporter(args):
    headers = {"authorization": f"Bearer {args.token}"} if args.token else None
    if args.protocol == "grpc":
        import grpc
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        credentials = grpc.ssl_channel_credentials(
            root_certificates=read(args.ca_file),
            private_key=read(args.client_key) if args.client_key else None,
            certificate_chain=read(args.client_cert) if args.client_cert else None,
        )
        return OTLPSpanExporter(
            endpoint=args.endpoint, credentials=credentials, headers=headers, timeout=3
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(
        endpoint=args.endpoint.rstrip("/") + "/v1/traces",
        certificate_file=args.ca_file,
        client_certificate_file=args.client_cert,
        client_key_file=args.client_key,
        headers=headers,
        timeout=3,
    )


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--protocol", choices=["grpc", "http"], required=True)
    p.add_argument("--endpoint", required=True)
    p.add_argument("--ca-file", required=True)
    p.add_argument("--token")
    p.add_argument("--client-cert")
    p.add_argument("--client-key")
    p.add_argument("--service", default="py-secure-agent")
    args = p.parse_args()

    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": args.service}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("secure-client")
    with tracer.start_as_current_span(
        "LangGraph", attributes={"openinference.span.kind": "AGENT"}
    ) as root:
        with tracer.start_as_current_span(
            "search_web", attributes={"openinference.span.kind": "TOOL"}
        ) as tool:
            tool.set_status(Status(StatusCode.ERROR, "search backend timed out"))
        trace_id = format(root.get_span_context().trace_id, "032x")
    result = exporter(args).export(memory.get_finished_spans())
    print(json.dumps({"trace_id": trace_id, "result": result.name}))


if __name__ == "__main__":
    main()
