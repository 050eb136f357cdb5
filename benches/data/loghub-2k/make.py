#!/usr/bin/env python3
"""Rebuilds the compact Loghub-2k files of this directory from a Loghub-2k checkout.

    python3 make.py /path/to/loghub-2k     # the folder holding HDFS/, Apache/, ...

For each dataset D it reads `D/D_2k.log_structured.csv` and
`D/D_2k.log_structured_corrected.csv` and writes `D.csv.gz` with the columns
`LineId, Content, EventId` (the original ground truth), `EventTemplate` (the corrected
ground truth) and `CorrectedContent` (the corrected file's message where it differs
from the original one, else empty). Nothing else of the source files is kept.
"""
import csv
import gzip
import io
import sys
from pathlib import Path

DATASETS = [
    "HDFS", "Hadoop", "Spark", "Zookeeper", "OpenStack", "BGL", "HPC", "Thunderbird",
    "Windows", "Linux", "Mac", "Android", "HealthApp", "Apache", "OpenSSH", "Proxifier",
]


def rows(path: Path):
    with path.open(newline="", encoding="utf-8", errors="replace") as f:
        return list(csv.DictReader(f))


def main() -> None:
    src = Path(sys.argv[1])
    out = Path(__file__).resolve().parent
    for d in DATASETS:
        original = rows(src / d / f"{d}_2k.log_structured.csv")
        corrected = rows(src / d / f"{d}_2k.log_structured_corrected.csv")
        if len(original) != len(corrected):
            sys.exit(f"{d}: {len(original)} original rows, {len(corrected)} corrected")
        text = io.StringIO()
        w = csv.writer(text, lineterminator="\n")
        w.writerow(["LineId", "Content", "EventId", "EventTemplate", "CorrectedContent"])
        for o, c in zip(original, corrected):
            if o["LineId"] != c["LineId"]:
                sys.exit(f"{d}: line {o['LineId']} is {c['LineId']} in the corrected file")
            changed = c["Content"] if c["Content"] != o["Content"] else ""
            w.writerow([o["LineId"], o["Content"], o["EventId"], c["EventTemplate"], changed])
        # A fixed mtime keeps the files byte-identical across rebuilds.
        with gzip.GzipFile(out / f"{d}.csv.gz", "wb", compresslevel=9, mtime=0) as f:
            f.write(text.getvalue().encode("utf-8"))


if __name__ == "__main__":
    main()
