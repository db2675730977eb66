"""One run of the reliability suite, summarised as the table in docs/reliability.md.

Runs ``pytest tests/reliability`` once (with ``-s`` so the kill and import tests print their
measurements), reads the JUnit report for the case counts per part, and, unless
``--no-live-faults``, runs ``benchmarks/live_faults.py`` for requests per failed call and
budget vs spent. Prints a markdown table; every figure in it comes from this run.

    python benchmarks/reliability_report.py [--no-live-faults]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PARTS = {
    "test_sandbox_escapes": "sandbox: escape corpus, OS layer, end-to-end live step",
    "test_bad_input": "bad input: CLI, importer, forms, long-format and task files",
    "test_export_import": "exports and imports: formulas, secrets, cell sizes, chunked import",
    "test_run_lifecycle": "run lifecycle: kill -9, SIGTERM, resume, delete, demo, locks",
    "test_live_faults": "live calls: fake OpenAI server (429/500/hang/garbled/lying usage)",
}


def run_suite() -> tuple[dict[str, Counter], list[str], float]:
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "junit.xml"
        t0 = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
                               f"--junitxml={xml}", "tests/reliability"],
                              cwd=ROOT, capture_output=True, text=True)
        elapsed = time.monotonic() - t0
        counts: dict[str, Counter] = {}
        failed: list[str] = []
        for case in ET.parse(xml).getroot().iter("testcase"):
            part = case.get("classname", "").split(".")[-1]
            kind = ("failed" if case.find("failure") is not None or case.find("error") is not None
                    else "skipped" if case.find("skipped") is not None else "passed")
            counts.setdefault(part, Counter())[kind] += 1
            if kind == "failed":
                bad = case.find("failure") if case.find("failure") is not None else case.find("error")
                why = (bad.get("message") or "").splitlines()[0][:300] if bad is not None else ""
                failed.append(f"FAILED {part}::{case.get('name')}: {why}")
    printed = [ln.strip() for ln in proc.stdout.splitlines()
               if re.search(r"records lost per kill|concurrent writer|SIGKILL", ln)]
    printed += failed
    tracebacks = proc.stdout.count("Traceback (most recent call last)")
    printed.append(f"'Traceback' printed by the CLI cases: {tracebacks} (the corpus asserts 0 per case)")
    return counts, printed, elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--no-live-faults", action="store_true", help="skip benchmarks/live_faults.py")
    args = ap.parse_args()
    counts, printed, elapsed = run_suite()
    print(f"## tests/reliability ({elapsed:.0f} s)\n")
    print("| part | cases | passed (clear error / refused / held) | failed | skipped |")
    print("|---|---:|---:|---:|---:|")
    total = Counter()
    for part, c in sorted(counts.items()):
        total.update(c)
        print(f"| {PARTS.get(part, part)} | {sum(c.values())} | {c['passed']} | {c['failed']} | "
              f"{c['skipped']} |")
    print(f"| **all** | {sum(total.values())} | {total['passed']} | {total['failed']} | "
          f"{total['skipped']} |\n")
    for line in printed:
        print(f"- {line}")
    if not args.no_live_faults:
        print("\n## benchmarks/live_faults.py\n")
        sys.stdout.flush()
        subprocess.run([sys.executable, "-m", "benchmarks.live_faults"], cwd=ROOT)
    return 0 if total["failed"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
