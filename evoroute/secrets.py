"""One redaction of credentials for every text that leaves or enters the base: error messages
stored by the live backend, every cell of a CSV export, and every cell of a CSV import.

Removed: values of environment variables whose name says KEY / TOKEN / SECRET / PASSWORD /
PASSWD / CREDENTIAL (8 characters or more), and credential-shaped strings: OpenAI / Anthropic
``sk-…``, AWS access key ids, Google ``AIza…`` and OAuth ``ya29.…``, GitHub ``ghp_``/``gho_``/
``ghu_``/``ghs_``/``ghr_``/``github_pat_``, GitLab ``glpat-``, Hugging Face ``hf_``, npm, Stripe,
Slack ``xox?-`` tokens and webhooks, JWTs, PEM private-key blocks, ``Bearer`` / ``Basic``
credentials, ``Authorization:`` headers, ``password=`` / ``passwd:`` / ``secret=`` /
``api_key=`` / ``token=`` / ``access_key=`` / ``AccountKey=`` assignments (also as JSON keys and
URL query parameters) and URLs with ``user:password@``.

Redaction is idempotent (redacting a redacted text changes nothing), so an exported file can be
imported and exported again without drift.
"""

from __future__ import annotations

import os
import re
from typing import Any

REDACTED = "[redacted]"
SECRET_ENV_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL)", re.IGNORECASE)
# names whose value is a credential in ``name=value`` / ``name: value`` / ``"name": "value"``;
# ``token`` must end the name (``max_tokens=64`` and ``input_tokens: 5`` are not secrets)
# The name's own prefix (``db_``, ``x-``) is left to stand outside the match: the name is found
# where it begins a word or follows a letter or digit and ``_ . -``. (Matching the prefix as
# ``(?:[A-Za-z0-9]+[_.-])*`` tried the whole chain again at every word start: 32 KB of
# ``pass=a-a-a-…`` took 0.7 s, an 8 MiB cell would take hours.)
_SECRET_KEY = (r"(?:password|passwd|pwd|pass|secret|api[_-]?key|apikey|"
               r"token|access[_-]?key|secret[_-]?key|private[_-]?key|auth[_-]?key|accountkey|"
               r"credentials?|client[_-]?secret|sig|signature)")
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # PEM private keys: the whole block (or to the end of the text when it was cut off)
    (re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----.*?(?:-----END (?:[A-Z0-9]+ )*"
                r"PRIVATE KEY-----|\Z)", re.DOTALL), "[redacted private key]"),
    # user:password@ in a URL, found from its "://" (a scheme matched from each word start
    # rescanned the whole word: 40 KB of "a-a-a-…" took 1.5 s)
    (re.compile(r"(?<=[a-zA-Z0-9+.\-]://)[^\s/:@\[\]]+:[^\s/@\[\]]+@"), REDACTED + "@"),
    (re.compile(r"\beyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}"), REDACTED),  # JWT
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{6,}"), "sk-" + REDACTED),                 # OpenAI / Anthropic
    (re.compile(r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{10,}"), REDACTED),      # Stripe
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), REDACTED),                  # AWS access key id
    (re.compile(r"\bAIza[0-9A-Za-z_\-]{30,}"), REDACTED),                      # Google API key
    (re.compile(r"\bya29\.[0-9A-Za-z_\-]{20,}"), REDACTED),                    # Google OAuth
    (re.compile(r"\bgithub_pat_[A-Za-z0-9_]{20,}"), REDACTED),                 # GitHub fine-grained
    (re.compile(r"\b(?:ghp|gho|ghu|ghs|ghr|hf|npm)_[A-Za-z0-9]{20,}"), REDACTED),  # GitHub / HF / npm
    (re.compile(r"\bglpat-[A-Za-z0-9_\-]{20,}"), REDACTED),                    # GitLab
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9\-]{10,}"), REDACTED),               # Slack tokens
    (re.compile(r"https://hooks\.slack\.com/services/[A-Za-z0-9/_\-]+"), REDACTED),  # Slack webhook
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/\-]{8,}=*"), r"\1 " + REDACTED),
    (re.compile(r"(?i)\b(authorization|x-api-key)(\s*[:=]\s*)[\"']?(?!bearer\b|basic\b)"
                r"[^\s\"',;]{8,}"), r"\1\2" + REDACTED),
    (re.compile(r"(?i)(?:\b|(?<=[A-Za-z0-9][_.-]))(" + _SECRET_KEY
                + r")([\"']?\s*[:=]\s*[\"']?)(?!\[redacted)[^\s\"',;&<>]{3,}"), r"\1\2" + REDACTED),
)


# One cheap search first: a text none of the patterns can match (most cells) skips them all.
# It runs on the lower-cased text without re.IGNORECASE: a case-insensitive alternation is
# tried at every position (about 1 MB/s; a 12,600-step export took 114 s), a lower-case one
# is skipped ahead by its first characters (~10x faster). The three characters that
# IGNORECASE folds onto ASCII letters but str.lower() does not are mapped first, so the
# filter lets through everything the IGNORECASE patterns can match.
# The name-led patterns (Bearer / Basic, Authorization:, password= ...) are let through only
# with what must follow the name (whitespace, ':' or '='): prose ("signature", "passing",
# "a basic life", "key"), which the neighbour texts of most explanations hold, is not. A flat
# alternation of literal-led branches is searched about twice as fast as grouped branches
# (Bearer / Basic keep their pattern's 8 credential characters: "a basic life" is prose).
_NAME_TAIL = r"[\"']?\s*[:=]"
_TRIGGER = re.compile("|".join(
    [r"private key", r"://[^\s/]*@", "eyj", "sk-", "sk_", "rk_", "akia", "asia", "aiza", r"ya29\.",
     "_pat_", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "hf_", "npm_", "glpat-", "xox",
     r"hooks\.slack", r"(?:bearer|basic)\s+[a-z0-9._~+/\-]{8}"]
    + [name + _NAME_TAIL for name in ("authorization", "password", "passwd", "pass", "pwd",
                                      "secret", "key", "token", "credential", "credentials",
                                      "sig", "signature")]))
# Every match of _TRIGGER contains one of these words; str's substring search is faster still,
# so the regex runs only on the texts that hold one (a fifth of explanations, a twentieth of
# instructions in the demo base).
_TRIGGER_WORDS = ("://", "eyj", "sk-", "sk_", "rk_", "akia", "asia", "aiza", "ya29.", "_pat_",
                  "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "hf_", "npm_", "glpat-", "xox",
                  "hooks.slack", "bearer", "basic", "authorization", "pass", "pwd", "secret",
                  "key", "token", "credential", "sig")
_FOLD = {0x130: "i", 0x131: "i", 0x17F: "s"}     # İ ı ſ match i / s under IGNORECASE


def may_hold_secret(text: str) -> bool:
    """False when no credential pattern can match ``text`` (env values aside): the prefilter."""
    low = text.lower() if text.isascii() else text.translate(_FOLD).lower()
    return any(w in low for w in _TRIGGER_WORDS) and _TRIGGER.search(low) is not None


def env_secrets() -> list[tuple[str, str]]:
    """(name, value) of secret-named environment variables, longest value first."""
    found = {(k, v) for k, v in os.environ.items()
             if v and len(v) >= 8 and SECRET_ENV_NAME.search(k)}
    return sorted(found, key=lambda kv: len(kv[1]), reverse=True)


def redact(text: str | None, *, env: list[tuple[str, str]] | None = None,
           name_env: bool = False) -> str:
    """``text`` without credentials. ``env`` lets a caller redacting many cells read the
    environment once; ``name_env`` says which variable was removed (``[redacted $NAME]``)."""
    out = str(text or "")
    for name, value in (env if env is not None else env_secrets()):
        if value in out:
            out = out.replace(value, f"[redacted ${name}]" if name_env else REDACTED)
    if not may_hold_secret(out):
        return out
    for pat, repl in _PATTERNS:
        out = pat.sub(repl, out)
    return out


def redact_json(value: Any, *, env: list[tuple[str, str]] | None = None) -> Any:
    """Every string inside a parsed JSON value redacted (keys included); the structure stays,
    so redacting a JSON document never makes it invalid."""
    if isinstance(value, str):
        return redact(value, env=env)
    if isinstance(value, list):
        return [redact_json(v, env=env) for v in value]
    if isinstance(value, dict):
        return {redact(k, env=env): redact_json(v, env=env) for k, v in value.items()}
    return value
