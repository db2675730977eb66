"""Where a model call may go, and which key it may carry there.

:func:`is_loopback` decides whether an api base points at this machine. The live backend gives
such a server a placeholder key, never a provider key from the environment, so it must know
every spelling of "this machine": all of 127.0.0.0/8 in any form the C resolver accepts
(``127.1``, ``2130706433``, ``0x7f.1``, ``0177.0.0.1``), ``::1`` and the IPv4-mapped
``::ffff:127.x.y.z``, the unspecified addresses ``0.0.0.0`` / ``::`` (a connection to them
lands on this host), and ``localhost`` / ``*.localhost`` (RFC 6761), case-insensitive, with or
without a trailing dot. Names are not resolved (no DNS): a name that is not ``localhost`` counts
as remote, so it gets the provider's key only if the model's provider is the one litellm picks
for it.

:func:`validate_api_base` is the one check every api base passes (model registration and the
live backend): http(s) only, a host, no credentials in the URL (user-info, key-like query
parameters, key-shaped strings, a fragment). Keys come from the environment only.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
import urllib.parse

from evoroute.core.errors import ValidationError

API_BASE_MAX_CHARS = 2048
# What a loopback server gets as its key. llama-cpp-python's server accepts any key unless
# started with --api_key; litellm insists on one, so this placeholder is sent. It is not a
# secret and grants nothing.
LOCAL_API_KEY = "sk-local-llama-cpp-no-auth"
# query parameter names that carry credentials (compared lower-case, without - and _)
_KEY_PARAM_EXACT = {"key", "sig", "sas", "code", "auth", "pwd", "pass", "jwt", "session",
                    "sessionid", "sv", "se"}
_KEY_PARAM_PARTS = ("apikey", "token", "secret", "password", "passwd", "signature",
                    "credential", "authorization", "accesskey", "privatekey", "clientkey",
                    "subscriptionkey", "bearer", "xapikey")
_NUM = re.compile(r"^(0x[0-9a-f]*|0[0-7]*|[1-9][0-9]*)$")


def _inet_aton(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address the classic resolver (``inet_aton``) makes of ``host``, or None.

    1 to 4 dot-separated parts, each decimal, ``0x`` hex or ``0`` octal; the last part fills the
    remaining bytes (``127.1`` = 127.0.0.1, ``2130706433`` = 127.0.0.1). httpx, urllib and curl
    hand such hosts to ``getaddrinfo``, which accepts these forms, so they must count here too.
    """
    parts = host.split(".")
    if not 1 <= len(parts) <= 4 or not all(_NUM.match(p) for p in parts):
        return None
    try:
        vals = [int(p, 16) if p.startswith("0x") else int(p, 8) if p.startswith("0") and len(p) > 1
                else int(p) for p in parts]
    except ValueError:          # "0x" alone
        return None
    *head, last = vals
    if any(v > 255 for v in head) or last >= 256 ** (4 - len(head)):
        return None
    n = 0
    for v in head:
        n = n * 256 + v
    n = n * 256 ** (4 - len(head)) + last
    return ipaddress.IPv4Address(n)


# what IDNA (httpx, the idna codec) reads as a label separator: ``127\u30020\u30020\u30021``
# connects to 127.0.0.1
_IDNA_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})


def _host_spellings(host: str) -> list[str]:
    """``host`` as given and, when it is not ASCII, as a URL library would connect to it:
    NFKC-normalised with the IDNA full stops as dots (fullwidth digits, ``\u3002``...), and
    through the ``idna`` codec."""
    out = [host]
    if not host.isascii():
        out.append(unicodedata.normalize("NFKC", host).translate(_IDNA_DOTS))
        try:
            out.append(host.encode("idna").decode("ascii"))
        except UnicodeError:
            pass
    return out


def is_loopback_host(host: str | None) -> bool:
    """True if a connection to ``host`` (a URL's host part, brackets removed) stays on this
    machine. See the module docstring for the forms covered; a non-ASCII spelling counts as
    the ASCII host IDNA makes of it."""
    if not host:
        return False
    return any(_is_loopback_ascii(h) for h in _host_spellings(host))


def _is_loopback_ascii(host: str) -> bool:
    h = host.strip().lower().rstrip(".")
    if h.startswith("[") and h.endswith("]"):
        h = h[1:-1]
    if h == "localhost" or h.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(h.split("%", 1)[0])
    except ValueError:
        ip = _inet_aton(h)
        if ip is None:
            return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_unspecified


def is_loopback(api_base: str | None) -> bool:
    """True if ``api_base`` (a URL) points at this machine."""
    if not api_base:
        return False
    try:
        host = urllib.parse.urlsplit(str(api_base).strip()).hostname
    except ValueError:
        return False
    return is_loopback_host(host)


def _key_like(name: str) -> bool:
    n = re.sub(r"[-_.\s]", "", name.lower())
    return n in _KEY_PARAM_EXACT or any(p in n for p in _KEY_PARAM_PARTS) or n.endswith("key")


def validate_api_base(url: str) -> str:
    """The api base, stripped, or :class:`ValidationError` (field ``api_base``) saying why not.

    Accepted: ``http://`` or ``https://`` with a host and an optional port and path, and query
    parameters that carry no credentials (e.g. Azure's ``api-version``). Refused: any other
    scheme (``file:``, ``javascript:``...), no host, user-info (``user:pass@``), a key-like
    query parameter (``api_key``, ``key``, ``token``, ``access_token``, ``secret``, ``password``,
    ``sig``... any case), a key-shaped string anywhere (``sk-...``), a fragment, whitespace or
    control characters, more than 2048 characters. The message never repeats the secret.
    """
    def bad(why: str) -> ValidationError:
        return ValidationError(f"api_base {why}; keys come from the environment only, never "
                               f"from the URL", "api_base")

    if not isinstance(url, str):
        raise ValidationError(f"api_base must be a URL string, got {type(url).__name__}", "api_base")
    u = url.strip()
    if not u:
        raise ValidationError("api_base is empty", "api_base")
    if len(u) > API_BASE_MAX_CHARS:
        raise ValidationError(f"api_base is longer than {API_BASE_MAX_CHARS} characters "
                              f"({len(u)})", "api_base")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in u):
        raise ValidationError("api_base must not contain spaces or control characters", "api_base")
    try:
        parts = urllib.parse.urlsplit(u)
        port = parts.port
    except ValueError as exc:
        raise ValidationError(f"api_base is not a valid URL ({exc})", "api_base") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        shown = (scheme or "none")[:20]
        raise ValidationError(f"api_base must be an http:// or https:// URL (scheme {shown!r} "
                              f"is not allowed), e.g. http://127.0.0.1:8080/v1", "api_base")
    if "@" in parts.netloc or parts.username is not None:
        raise bad("must not carry credentials (user:password@host)")
    if not parts.hostname:
        raise ValidationError("api_base has no host, e.g. http://127.0.0.1:8080/v1", "api_base")
    if not parts.netloc.isascii():
        # IDNA maps fullwidth digits and ideographic full stops: "127\u30020\u30020\u30021"
        # connects to 127.0.0.1; only the ASCII (xn--) form is checked and sent as it is
        raise ValidationError("api_base host must be ASCII (write an internationalised name in "
                              "its xn-- form)", "api_base")
    if port == 0:
        raise ValidationError("api_base has port 0", "api_base")
    if parts.fragment or "#" in u:
        raise ValidationError("api_base must not have a #fragment", "api_base")
    for name, _ in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
        if _key_like(name):
            raise bad(f"must not carry a key in its query (parameter {name[:40]!r})")
    # ;name=value path parameters and name=value pairs after ; in the query are parameters too
    for piece in re.split(r"[;&/?]", urllib.parse.unquote(parts.path + "?" + parts.query)):
        name = piece.split("=", 1)[0]
        if "=" in piece and _key_like(name):
            raise bad(f"must not carry a key in its path or query (parameter {name[:40]!r})")
    from evoroute.secrets import redact  # key-shaped strings (sk-..., AKIA..., bearer ...)

    if redact(u) != u:
        raise bad("contains something shaped like a key or token")
    return u


__all__ = ["is_loopback", "is_loopback_host", "validate_api_base", "API_BASE_MAX_CHARS",
           "LOCAL_API_KEY"]
