"""Secrets taken out of text before it is shown: one function, used wherever a URL is.

Store, bus and registry URLs carry credentials (``postgresql://app:secret@db/app``,
``nats://user:secret@host``, ``nats://s3cr3t-token@host``, ``?sslpassword=...``) because
that is how operators hand them over. Every place that shows a URL — a URL type's
``repr``, an error message, a log line, the CLI, a status page — shows ``redact(url)``
instead, so that the one rule lives here and nowhere else:

* a password in the user information becomes ``***`` (``app:***@db``);
* user information without a password is a user name on PostgreSQL's schemes and stays
  (``postgresql://app@db``: knowing who connects helps, and is no secret); on every other
  scheme it may be a token (``nats://TOKEN@host``, ``https://TOKEN@host``) and becomes
  ``***``;
* the value of a secret-named option (``password``, ``sslpassword``, ``token``,
  ``secret``, ``api_key``, ``nkey``) becomes ``***``, in a query string
  (``?password=x``) or in libpq's ``key=value`` form (``password=x host=db``).

``redact`` takes any text, not only one URL, so an error message that quotes a URL (or a
driver's message that quotes a connection string) is made safe whole. ``RedactingFilter``
does the same to every log record that reaches a handler — its message and its
traceback — for what a library below eventcore might log::

    handler.addFilter(RedactingFilter())
"""

from __future__ import annotations

import logging
import re
from typing import Final

__all__ = ["MASK", "RedactingFilter", "redact"]

MASK: Final = "***"

#: Schemes whose bare user information is a user name, not a token.
_USER_SCHEMES: Final = frozenset({"postgresql", "postgres"})

# ``scheme://userinfo@``: the user information runs to the last "@" before the path.
_USERINFO: Final = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<userinfo>[^\s/?#@]*(?:@[^\s/?#@]*)*)@"
)
# An option whose value is a secret, after "?", "&", ";" or a space or at the start.
_SECRET_OPTION: Final = re.compile(
    r"(?P<key>(?:^|(?<=[\s?&;,(\"']))"
    r"(?:password|passwd|sslpassword|token|auth_token|secret|client_secret|api_key|apikey"
    r"|nkey)\s*=\s*)"
    r"(?P<value>'(?:[^'\\]|\\.)*'|[^\s&;#,)\"']+)",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """``text`` with every credential in it replaced by ``***`` (see the module)."""
    if "@" not in text and "=" not in text:
        return text
    return _SECRET_OPTION.sub(_mask_option, _USERINFO.sub(_mask_userinfo, text))


def _mask_userinfo(match: re.Match[str]) -> str:
    scheme, userinfo = match["scheme"], match["userinfo"]
    user, colon, _ = userinfo.partition(":")
    if colon:
        shown = f"{user}:{MASK}"
    elif scheme.lower() in _USER_SCHEMES:
        shown = userinfo
    else:
        shown = MASK
    return f"{scheme}://{shown}@"


def _mask_option(match: re.Match[str]) -> str:
    return f"{match['key']}{MASK}"


class RedactingFilter(logging.Filter):
    """Masks credentials in every record it sees (message, arguments and traceback); it
    drops none. Put it on a handler: a logger's filters see only that logger's records."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        shown = redact(message)
        if shown != message:
            record.msg, record.args = shown, None
        if record.exc_info and not record.exc_text:
            # Formatters use exc_text when it is set, so the traceback is shown masked.
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True
