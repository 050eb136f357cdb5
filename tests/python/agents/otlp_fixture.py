"""Writes finished spans as OTLP/JSON files, one per trace, as golden test inputs.

OTLP/JSON differs from protobuf's generic JSON mapping: trace and span ids are hex, not
base64. Everything else (lowerCamelCase keys, int64 as strings, enums as integers) is what
`json_format.MessageToDict` writes with `use_integers_for_enums=True`.
"""

import base64
import json
import os

from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans


def _hex_ids(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("traceId", "spanId", "parentSpanId") and isinstance(value, str):
                node[key] = base64.b64decode(value).hex()
            else:
                _hex_ids(value)
    elif isinstance(node, list):
        for item in node:
            _hex_ids(item)


def write_fixtures(spans, names, out_dir):
    """`names` maps a trace id (int) to a file stem."""
    os.makedirs(out_dir, exist_ok=True)
    by_trace = {}
    for span in spans:
        by_trace.setdefault(span.context.trace_id, []).append(span)
    for trace_id, stem in names.items():
        request = encode_spans(by_trace.get(trace_id, []))
        doc = json_format.MessageToDict(request, use_integers_for_enums=True)
        _hex_ids(doc)
        path = os.path.join(out_dir, stem + ".otlp.json")
        with open(path, "w") as f:
            json.dump(doc, f, indent=1, sort_keys=True)
            f.write("\n")
