"""Text conventions shared by training and inference.

On social networks a reply starts with the @mentions of the people in the thread (`@AcmeSupport ...`,
`@115712 Hi ...`); the platform adds them, so they are not part of what the agent says. After PII
redaction they read `[HANDLE] Hi ...`. Both are stripped from the start of every turn before a model
sees it, so the model neither learns nor echoes them.
"""

from __future__ import annotations

import re

_LEADING_MENTIONS = re.compile(r"^(?:(?:@\w+|\[HANDLE\])[\s,:]*)+")


def strip_leading_mentions(text: str) -> str:
    stripped = _LEADING_MENTIONS.sub("", text).strip()
    return stripped or text.strip()
