"""Keep request credentials out of logs that litevfs does not write itself.

botocore logs whole signed requests at DEBUG (``Authorization: ... Signature=...``, the
canonical request with ``x-amz-security-token``, SSE-C key headers). A signature or
token in a log file is a credential. :func:`install` adds a filter to those loggers
that masks the values; litevfs's own messages only ever name redacted URLs.
"""

from __future__ import annotations

import logging
import re

_PATTERNS = [
    (re.compile(r"(Signature=|X-Amz-Signature=|Credential=)[^,&'\"\s}]+", re.I), r"\1REDACTED"),
    (re.compile(r"((?:x-amz-security-token|x-amz-server-side-encryption-customer-key"
                r"(?:-md5)?|X-Amz-Security-Token|SSECustomerKey)['\"]?\s*[:=]\s*b?['\"]?)"
                r"[^,'\"\s}&]+", re.I), r"\1REDACTED"),
]
LOGGERS = ("botocore.endpoint", "botocore.auth", "botocore.parsers", "botocore.hooks",
           "botocore.httpsession", "botocore.awsrequest", "botocore.retryhandler",
           "botocore.credentials", "botocore.handlers", "urllib3.connectionpool")


def redact(text: str) -> str:
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is not ours to fix
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


_installed = False


def install() -> None:
    """Idempotent; called when the first botocore client is built."""
    global _installed
    if _installed:
        return
    _installed = True
    filt = RedactingFilter()
    for name in LOGGERS:
        logging.getLogger(name).addFilter(filt)
