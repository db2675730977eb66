"""The linear rewrites of the patterns that read untrusted text, fuzzed against the patterns they
replaced (docs/reliability.md)::

    python benchmarks/pattern_fuzz.py [--n 100000] [--seed 0]

On random texts built from the characters and words each pattern cares about, it counts:

* tool lines (``CALC:`` / ``PYTHON:``) and untagged arithmetic: outputs that differ (expect 0);
* multiple-choice options (``A) text``): outputs that differ (expect 0);
* ``ANSWER``: texts whose *first* tag the old pattern read as a number and the new one reads
  otherwise (expect 0; the new one may read a first tag the old one skipped);
* credential redaction: outputs that differ, and among them texts where the new output shows a
  secret value the old one hid.

Then the time of each new pattern on a million-character hostile text. Prints JSON.
"""

from __future__ import annotations

import json
import random
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evoroute import secrets  # noqa: E402
from evoroute.agent import tools as T  # noqa: E402
from evoroute.collab.answers import _OPTION  # noqa: E402

# --- the replaced patterns, as they were before 2026-12-03 ---------------------------------
OLD_TAGGED = re.compile(r"^\W*(CALC|CALCULATOR|PYTHON)\W*?\s*[:=]\s*(.+?)\s*$",
                        re.IGNORECASE | re.MULTILINE)
OLD_ARITH = re.compile(r"[\d(][\d\s.+\-*/()%^×÷]*[\d)]")
OLD_ANSWER = re.compile(r"ANSWER\W*?\s*[:=]?\s*([-+]?\$?\s?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?)",
                        re.IGNORECASE)
OLD_OPTION = re.compile(r"^\s*([A-Z])\)\s*(.*?)\s*$", re.MULTILINE)
OLD_URL = (re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.\-]*://)[^\s/:@\[\]]+:[^\s/@\[\]]+@"),
           r"\1" + secrets.REDACTED + "@")
OLD_NAME = (re.compile(r"(?i)\b((?:[A-Za-z0-9]+[_.-])*" + secrets._SECRET_KEY
                       + r")([\"']?\s*[:=]\s*[\"']?)(?!\[redacted)[^\s\"',;&<>]{3,}"),
            r"\1\2" + secrets.REDACTED)


def old_calls(text: str, allow_untagged: bool = True) -> list[tuple[str, str]]:
    calls = []
    for m in OLD_TAGGED.finditer(text):
        expr = m.group(2).strip().strip("`").strip()
        if expr:
            calls.append(("python" if m.group(1).lower() == "python" else "calculator", expr))
    if calls or not allow_untagged:
        return calls[:3]
    spans = [s for s in (x.strip() for x in OLD_ARITH.findall(text))
             if re.search(r"\d\s*[-+*/×÷^%]\s*[\d(]", s)]
    return [("calculator", max(spans, key=len))] if spans else []


def old_redact(text: str) -> str:
    out = text
    if not secrets.may_hold_secret(out):
        return out
    pats = list(secrets._PATTERNS)
    pats[1], pats[-1] = OLD_URL, OLD_NAME          # the two rewritten ones, in their places
    for pat, repl in pats:
        out = pat.sub(repl, out)
    return out


def texts(rng: random.Random, atoms: list[str], n: int, most: int = 14):
    for _ in range(n):
        yield "".join(rng.choice(atoms) for _ in range(rng.randint(0, most)))


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    rng = random.Random(a.seed)
    out: dict = {"command": "python benchmarks/pattern_fuzz.py " + " ".join(sys.argv[1:]), "n": a.n}

    reply_atoms = ["CALC", "calc", "CALCULATOR", "PYTHON", "ANSWER", "answer", ":", "=", " ", "\n",
                   "\t", "*", "**", "`", "-", "+", "$", ".", ",", "1", "23", "4.5", "1,000", "(", ")",
                   "x", "is", "/", "%", "^", "×", "\r", "٣", "!", "#", "[", "]"]
    calls = first_tag = 0
    for s in texts(rng, reply_atoms, a.n):
        calls += any(old_calls(s, u) != T.extract_tool_calls(s, allow_untagged=u) for u in (True, False))
        m = OLD_ANSWER.search(s)
        v = T.parse_number(m.group(1)) if m else None
        first_tag += v is not None and T.extract_answer(s) != v
    out["tool_calls_differ"] = calls
    out["answer_first_tag_read_differently"] = first_tag

    option_atoms = ["A)", "B)", "C) x", " ", "\n", "\t", "foo", "A", ")", "\r", "\x85", "\u2028",
                    "  \n", "Z) y y  ", "\n\n"]
    out["options_differ"] = sum(OLD_OPTION.findall(s) != _OPTION.findall(s)
                                for s in texts(rng, option_atoms, a.n, 12))

    values = ["hunter22", "abcdef", "xyz123", "s3cretpw"]
    secret_atoms = ["password", "pass", "pwd", "token", "secret", "key", "api_key", "x-api-key", "db",
                    "a", "_", "__", ".", "-", "=", ":", " ", '"', "'", "é", "sig", "credentials", "1",
                    "\n", ",", "://", "http", "@", "/", "u:p", *values]
    differ = shows = 0
    for s in texts(rng, secret_atoms, a.n, 12):
        o, n = old_redact(s), secrets.redact(s, env=[])
        if o != n:
            differ += 1
            shows += any(n.count(v) > o.count(v) for v in values)
    out["redaction_differs"] = differ
    out["redaction_new_shows_a_value_the_old_hid"] = shows

    hostile = {"tool line": (T.extract_tool_calls, "CALC" + " " * 1_000_000 + "x"),
               "tool line, trailing": (T.extract_tool_calls, "CALC: a" + " " * 1_000_000 + "b"),
               "parentheses": (T.extract_tool_calls, "(" * 1_000_000 + "x"),
               "answer": (T.extract_answer, "ANSWER" + " " * 1_000_000 + "-x"),
               "options": (_OPTION.findall, "\n" * 1_000_000 + "A) x"),
               "credential name": (lambda t: secrets.redact(t, env=[]), "pass=" + "a-" * 500_000),
               "url userinfo": (lambda t: secrets.redact(t, env=[]), "https://" + "u:" * 500_000)}
    timing = {}
    for name, (fn, text) in hostile.items():
        t0 = time.perf_counter()
        fn(text)
        timing[name] = round(time.perf_counter() - t0, 3)
    out["seconds_on_a_million_characters"] = timing
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
