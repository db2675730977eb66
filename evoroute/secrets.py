"""One redaction of credentials for every text that leaves a call: error messages stored by the
live backend and every cell of a CSV export.

Removed: values of environment variables whose name says KEY / TOKEN / SECRET / PASSWORD /
PASSWD / CREDENTIAL (8 characters or more), and key-shaped strings (``sk-…``, AWS, Google,
GitHub / Hugging Face tokens, bearer tokens, ``api_key=…``, ``Authorization: …``).
"""

from __future__ import annotations

import os
import re

REDACTED = "[redacted]"
SECRET_ENV_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL)", re.IGNORECASE)
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{6,}"), "sk-" + REDACTED),                 # OpenAI / Anthropic
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), REDACTED),                  # AWS access key id
    (re.compile(r"\bAIza[0-9A-Za-z_\-]{30,}"), REDACTED),                      # Google API key
    (re.compile(r"\b(?:ghp|gho|ghu|ghs|hf)_[A-Za-z0-9]{20,}"), REDACTED),      # GitHub / HF
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._\-=]{8,}"), r"\1 " + REDACTED),
    (re.compile(r"(?i)\b(api[_-]?key|x-api-key)(\s*[:=]\s*)[\"']?[^\s\"',;]{6,}"), r"\1\2" + REDACTED),
    # 8+: "Authorization: Bearer [redacted]" must not lose the word Bearer as well
    (re.compile(r"(?i)\b(authorization)(\s*[:=]\s*)[\"']?[^\s\"',;]{8,}"), r"\1\2" + REDACTED),
)


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
    for pat, repl in _PATTERNS:
        out = pat.sub(repl, out)
    return out
