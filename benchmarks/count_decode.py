"""CPU instructions per POST body: wahook's decoder against ``json.loads``, counted by valgrind.

Instruction counts do not move with the machine's load, so they compare decoders where
timings cannot. For each payload and decoder, the body is decoded N and N + K times in two
fresh interpreters under ``valgrind --tool=callgrind``; the difference over K is the cost
of one body, start-up and imports cancelled out.

    .venv/bin/python benchmarks/count_decode.py              # about a minute
    .venv/bin/python benchmarks/count_decode.py --extra 50   # K (default 200)

Needs ``valgrind`` on PATH.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAYLOADS = {
    "(a) 1 status": "status_sent_pricing",
    "(b) 1 text + contacts": "msg_text",
    "(c) 50 statuses": "statuses_50",
}
# Run inside the measured interpreter: decode one fixture `count` times.
CHILD = """
import sys
sys.path.insert(0, {root!r})
from tests.fixtures import load
body = load({name!r})
if {which!r} == "json":
    import json
    run = json.loads
else:
    from wahook.parse import decode
    def run(body):
        return list(decode(body).events())
run(body)  # warm: first-call costs belong to neither count
for _ in range({count}):
    run(body)
"""


def instructions(name: str, which: str, count: int) -> int:
    code = CHILD.format(root=str(ROOT), name=name, which=which, count=count)
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
         "-c", code],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    found = re.search(r"Collected\s*:\s*(\d+)", out.stderr)
    if found is None:
        raise SystemExit(f"valgrind printed no instruction count:\n{out.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", type=int, default=10, help="N: decodes in the first run")
    parser.add_argument("--extra", type=int, default=200, help="K: decodes added in the second")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not on PATH (Debian: apt-get install valgrind)")
    print(f"{'payload':<24} {'json.loads':>12} {'wahook':>12} {'json ÷ wahook':>14}")
    for label, name in PAYLOADS.items():
        per = {}
        for which in ("json", "wahook"):
            low = instructions(name, which, args.base)
            high = instructions(name, which, args.base + args.extra)
            per[which] = (high - low) / args.extra
        print(
            f"{label:<24} {per['json'] / 1000:>11,.1f}K {per['wahook'] / 1000:>11,.1f}K"
            f" {per['json'] / per['wahook']:>13.2f}×",
            flush=True,
        )


if __name__ == "__main__":
    main()
