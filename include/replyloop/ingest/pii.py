"""PII detection and redaction for customer-service messages (tweets, DMs).

Every detected span is replaced by a typed placeholder, so the fine-tuned model learns *where* personal
data goes in a conversation without ever seeing it:

==========  ===========  ============================================================================
kind        placeholder  what is redacted
==========  ===========  ============================================================================
EMAIL       [EMAIL]      ``name+tag@sub.domain.tld`` (a TLD is required), also ``name [at] domain [dot] com``
PHONE       [PHONE]      international (``+44 20 7946 0958``, ``0033 1 23 45 67 89``, ``+1 (415) 555-0132``),
                         North-American (``415-555-0132``, ``(415) 555 0132``, ``415.555.0132``), national
                         numbers with a trunk 0 (``07700 900123``, ``030/12345678``); 8-15 digits in all
CARD        [CARD]       13-19 digits, plain or grouped with spaces/dashes, that pass the Luhn check and
                         start like a payment card (2-6)
IBAN        [IBAN]       country code + check digits + BBAN, spaced or compact, of the country's length
                         and passing the ISO 13616 mod-97 check
ACCOUNT     [ACCOUNT]    6+ digits after an account keyword: account/acct/a/c no./member id/customer
                         number/loyalty/policy... (only the number is replaced, the keyword stays)
SSN         [SSN]        US social security numbers ``123-45-6789`` (dashed form only)
URL         [URL]        ``http(s)://...``, ``www....`` and bare domains *with a path* (``bit.ly/xyz``,
                         ``t.co/abc``, ``pic.twitter.com/...``)
HANDLE      [HANDLE]     ``@customer_handle`` (Twitter/X syntax); the brand handles given as
                         ``keep_handles`` stay verbatim (case-insensitive, with or without ``@``)
ADDRESS     [ADDRESS]    number + street name + suffix (``221B Baker Street``, ``1600 Pennsylvania Ave NW``)
                         with an optional unit (``Apt 4B``, ``Suite 200``, ``Flat 3,``) and an optional
                         city + state/ZIP or UK postcode (``Springfield, IL 62704``, ``London NW1 6XE``);
                         German (``Hauptstraße 5, 10115 Berlin``), French (``12 rue de Rivoli``), Spanish
                         (``Calle Mayor 5``) forms; P.O. boxes; UK postcodes on their own (``SW1A 1AA``)
IP          [IP]         IPv4 addresses (not when labelled as a version: ``firmware 1.2.3.4``)
==========  ===========  ============================================================================

Decisions (what is *not* PII here, because it is operational data the reply model needs, or because
it does not identify a person):

* order, ticket, case, invoice, booking, reference and **tracking numbers** are kept: they identify a
  transaction with the brand, not a person, and they are what agents ask for. A number right after
  such a label is never taken for a phone or card (``order 4155550132``).
* prices, dates, times, percentages, quantities, years, model numbers (``XPS 13 9310``, ``RTX 4090``),
  hashtags, emoticons (``@_@``), ``@10am``-style times, and ``card ending 4242`` (last 4 digits) are kept.
* a 13-19 digit number that fails the Luhn check is not a card (it may still be an ACCOUNT by context);
  a Luhn-valid number after an order/tracking label is not a card either.
* a bare domain without a path (``acme.com``) is a company name, not a link to personal content; the
  same domain with a path, ``www.`` or a scheme is a URL.
* a city alone is not an address; it is only redacted as part of a street address that carries a
  state + ZIP or a postcode. A US ZIP code on its own is kept (5 digits are too ambiguous).
* an email-like token without a domain (``john@``, ``user@localhost``) is kept.

Overlaps are resolved deterministically: candidates are taken by kind priority (EMAIL, URL, IBAN, CARD,
SSN, IP, ACCOUNT, PHONE, ADDRESS, HANDLE), then longest first, then leftmost; a candidate that
overlaps an accepted span is dropped. Redaction is idempotent: placeholders contain no digits, ``@`` or
``.``, so nothing in them is detected again.

Speed: all patterns are compiled at import; a message without a digit only runs the ``@`` and URL
patterns, and those only when the message contains ``@`` / ``/`` / ``www.``. Detection-only patterns
are plain ``re``; validation (Luhn, mod-97, digit counts, context) runs only on candidates.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["PLACEHOLDERS", "KINDS", "PiiSpan", "PiiRedactor", "find_leaks", "score", "NaiveRedactor"]

PLACEHOLDERS: dict[str, str] = {
    "EMAIL": "[EMAIL]", "PHONE": "[PHONE]", "CARD": "[CARD]", "URL": "[URL]", "HANDLE": "[HANDLE]",
    "ADDRESS": "[ADDRESS]", "ACCOUNT": "[ACCOUNT]", "IBAN": "[IBAN]", "IP": "[IP]", "SSN": "[SSN]",
}
# Resolution order for overlapping candidates (most specific first).
KINDS: tuple[str, ...] = ("EMAIL", "URL", "IBAN", "CARD", "SSN", "IP", "ACCOUNT", "PHONE", "ADDRESS", "HANDLE")
_PRIORITY = {kind: i for i, kind in enumerate(KINDS)}


@dataclass(frozen=True)
class PiiSpan:
    kind: str
    start: int
    end: int
    text: str


# --- patterns -------------------------------------------------------------------------------------
_DIGIT = re.compile(r"\d")

# EMAIL: local part with dots/plus-tags, one or more domain labels and an alphabetic TLD.
_EMAIL = re.compile(
    r"(?<![\w.+%-])[A-Za-z0-9_%+-](?:[\w.%+-]{0,63}[\w%+-])?"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-]|\.[A-Za-z0-9])"
)
_EMAIL_OBFUSCATED = re.compile(
    r"(?i)(?<![\w.])[a-z0-9][\w.+-]{0,63}\s?[\[(]\s?at\s?[\])]\s?"
    r"(?:[a-z0-9-]+\s?(?:\.|[\[(]\s?dot\s?[\])])\s?)+[a-z]{2,24}\b"
)

# HANDLE: Twitter/X syntax; ".@handle" counts, "me@host" and "@_@" do not.
_HANDLE = re.compile(r"(?<![A-Za-z0-9_@])@([A-Za-z0-9_]{1,30})(?![A-Za-z0-9_@])")
_HANDLE_NOT = re.compile(r"(?i)\d{1,2}(?:[:.h]\d{2})?(?:am|pm|h)?$")  # "@10am", "@9", "@7pm"

# URL
_URL_CH = r"[A-Za-z0-9\-._~:/?#@!$&*+,;=%()']"
_TLDS = ("com|net|org|edu|gov|mil|int|info|biz|app|dev|ai|io|co|ly|me|gl|gd|to|tv|fm|be|in|us|uk|de|fr|es|"
         "it|nl|eu|ca|au|nz|ie|ch|at|se|no|dk|fi|pl|pt|br|mx|jp|cn|ru|link|page|shop|store|online|site|xyz|"
         "tech|cloud|news|blog|live|click|am|ms|cc|sh|gg|ws|is|li|la|id|su")
_URL = re.compile(
    rf"(?i)(?:\b(?:https?|ftp)://{_URL_CH}+"
    rf"|(?<![\w.@/-])www\d?\.[a-z0-9-]+(?:\.[a-z0-9-]+)+{_URL_CH}*"
    rf"|(?<![\w.@/%+-])(?:[a-z0-9](?:[a-z0-9-]{{0,61}}[a-z0-9])?\.)+(?:{_TLDS})/{_URL_CH}*)"
)
_URL_TRAIL = ".,;:!?'\")]}*"

# IBAN: candidate run, trimmed to the country's length and checked with mod 97.
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?:[ -]?[A-Za-z0-9]){10,32}")
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
    "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
    "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
    "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
    "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29,
    "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}

# CARD: 13-19 digits, not glued to other digit groups; Luhn + issuer prefix checked afterwards.
_CARD = re.compile(r"(?<![\d+#.,/])(?<!\d[ -])\d(?:[ -]?\d){12,18}(?![ -]?\d)")
_SEP = re.compile(r"[ -]+")

# SSN: dashed form only, invalid areas excluded.
_SSN = re.compile(r"(?<![\d#-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])")

# IPv4
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IP = re.compile(rf"(?<![\w.])(?:{_OCTET}\.){{3}}{_OCTET}(?![\w]|\.\d)")

# ACCOUNT: keyword, filler ("no.", "number", "id", "#", ":", "is"), then the number (group "num").
_ACCOUNT = re.compile(
    r"(?i)\b(?:account|acct|acc|a/c|member(?:ship)?|customer|client|loyalty|rewards|subscriber|policy|"
    r"contract|kundennummer|kundennr)\b\.?"
    r"(?:\s*(?:no\b\.?|nr\b\.?|num\b\.?|number\b|id\b|#|:|is\b|was\b|=|-))*\s*"
    r"(?P<num>(?-i:[A-Z]{1,4})[ -]?\d(?:[ -]?\d){5,19}|\d(?:[ -]?\d){5,19})(?![\d])"
)

# PHONE: international (+cc / 00cc), North-American, national with a trunk 0. The international
# candidate is a plain run of digits and separators, cut to a sane shape by `_intl_end`.
_PHONE = re.compile(
    r"""
    (?<![\w+#$€£¥@/.,-])(?<!\d\ )
    (?:
        (?P<intl>(?:\+\ ?|\b00)[1-9][\d().\ -]*\d)
      | (?P<nanp>(?:\b1[ .-]?)?(?:\(\d{3}\)|\b[2-9]\d{2})[ .-]?[2-9]\d{2}[ .-]?\d{4})
      | (?P<nat>(?:\(0\d{1,4}\)|\b0\d{1,4})(?P<s>\ ?[./-]?\ ?)\d{2,8}(?:(?P=s)\d{2,8}){0,3})
    )
    (?:\ ?(?:ext\.?|extension|x)\ ?\d{1,5})?
    (?![\w@%]|[./-]\d|:\d)
    """,
    re.X,
)
_PHONE_TOKEN = re.compile(r"\d+|[^\d]+")
_PHONE_SEPARATORS = frozenset({" ", ".", "-", "(", ")", " (", ") ", ")-", ")."})

# ADDRESS
_SUFFIX = (r"(?:(?i:street|road|avenue|lane|boulevard|drive|way|court|place|terrace|crescent|close|square|"
           r"parkway|highway|circle|loop|row|gardens|grove|mews|trail|alley|plaza|walk|hill)\b"
           r"|(?i:st|rd|ave|av|ln|blvd|dr|ct|pl|terr|cres|sq|pkwy|hwy|cir|gdns|trl)\b\.?)")
# Words that make "<number> <words> <suffix>" a sentence, not an address ("3 days on the road").
_NOT_STREET_WORDS = (
    "the|a|an|on|in|at|to|of|for|from|by|with|and|or|but|my|your|our|their|his|her|its|this|that|these|those|"
    "is|are|was|were|be|been|it|i|we|you|they|me|us|them|so|as|if|than|then|just|only|per|each|every|down|up|"
    "across|along|around|over|under|off|via|into|onto|near|next|last|more|less|days?|hours?|hrs|mins?|"
    "minutes?|weeks?|wks|months?|years?|yrs|times?|items?|pcs|pieces|boxes|orders?|tickets?|people|"
    "seconds?|secs|blocks?|miles?|km|meters?|kids|stars?|euros?|dollars?|pounds?|bucks"
)
_STREET_WORD = rf"(?!(?i:{_NOT_STREET_WORDS})\b)[^\W_][\w'’.-]*\s"
_UK_POSTCODE = r"(?:[A-Z]{1,2}\d[A-Z\d]?|GIR)\ ?\d[ABD-HJLNP-UW-Z]{2}(?!\w)(?<!\d[GTP]B)"
_UNIT = r"(?i:apt|apartment|suite|ste|unit|flat|fl|floor|rm|room|bldg|building)\.?\s?\#?[A-Za-z0-9-]{1,6}\b"
_CITY = r"[A-Z][a-zà-ÿ]+(?:[ -][A-Z][a-zà-ÿ]+){0,2}"
_TAIL = (rf"(?:,?\s(?:{_CITY},?\s)?(?:[A-Z]{{2}}\s\d{{5}}(?:-\d{{4}})?\b|{_UK_POSTCODE})"
         rf"|,?\s\d{{5}}\s[A-Z][a-zà-ÿ]+(?:[ -][A-Z][a-zà-ÿ]+)?)")
_ADDRESS = re.compile(
    rf"""
    (?<![\w#$€£.,/-])
    (?:{_UNIT},?\s)?                                   # "Flat 3, " / "Apt 4B "
    \d{{1,5}}[A-Za-z]?(?:[-/]\d{{1,5}}[A-Za-z]?)?\s   # "221B", "12-14"
    (?:{_STREET_WORD}){{1,4}}?                          # "Baker ", "Pennsylvania "
    {_SUFFIX}
    (?:\s(?i:n|s|e|w|ne|nw|se|sw)\b\.?)?              # "Ave NW"
    (?:,?\s{_UNIT}|,?\s\#\d{{1,5}}[A-Za-z]?\b)?      # "Apt 4B" / "Suite 200" / "#12"
    (?:{_TAIL})?
    """,
    re.X,
)
_ADDRESS_OTHER = re.compile(
    rf"""
    (?<![\w-])(?:                                                      # Hauptstraße 5 / 12 Hauptstraße
        [A-ZÄÖÜ][\wäöüß-]*(?i:stra(?:ß|ss)e|str\.|weg|allee|platz|gasse|damm|ufer|ring)
        (?:\s[A-ZÄÖÜ][\wäöüß-]*)?\s\d{{1,4}}[a-z]?\b
      | \d{{1,4}}[a-z]?\s[A-ZÄÖÜ][\wäöüß-]*(?i:stra(?:ß|ss)e)\b
    )(?:{_TAIL})?
    |(?<![\w-])\d{{1,4}}(?:\s?(?:bis|ter))?,?\s(?:rue|chemin|impasse|quai|allée|boulevard|bd|avenue|av\.)
        (?:\s(?:de|du|des|la|le))?(?:\s?(?:l'|d'))?\s?[A-ZÉÈ][\w'’-]+(?:\s[A-ZÉÈ][\w'’-]+){{0,2}}  # 12 rue de Rivoli
        (?:,?\s\d{{5}}\s[A-Z][a-zà-ÿ]+)?
    |(?<![\w-])(?:Calle|C/|Avenida|Avda\.|Plaza|Paseo|Carrer|Rua|Piazza|Viale)
        \s(?:(?:de|del|la|los|las|di|della|do|da)\s){{0,2}}[A-ZÁÉÍÓÚ][\wáéíóúñ'’-]+(?:\s[A-ZÁÉÍÓÚ][\wáéíóúñ'’-]+){{0,2}}
        ,?\s\d{{1,4}}[A-Za-z]?\b(?:,?\s\d{{1,2}}º?\s?[A-Za-z]?\b)?
        (?:,?\s\d{{5}}\s[A-Z][a-zà-ÿ]+)?
    |(?i:\bP\.?\s?O\.?\s?Box\s\d{{1,6}}\b)
    |(?<![\w-]){_UK_POSTCODE}
    """,
    re.X,
)

# Labels that turn a number into an operational identifier (never PHONE/CARD/ACCOUNT).
_OPERATIONAL_LABEL = re.compile(
    r"(?i)\b(?:order|ord|invoice|inv|ticket|case|ref|reference|tracking|track|trk|confirmation|conf|booking|"
    r"reservation|shipment|parcel|package|consignment|serial|s/n|sku|item|model|part|po|rma|claim|"
    r"receipt|transaction|txn|awb|waybill|flight|gate|seat|version|firmware|build|fw)"
    r"\W{0,3}(?:no\b\.?|num\b\.?|number|nr\b\.?|id|code)?\W{0,3}(?:is\s|was\s|=\s?)?\W{0,2}$"
)
_LOOKBACK = 40


# --- validators -----------------------------------------------------------------------------------
_LUHN_DOUBLE = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


def luhn_ok(digits: str) -> bool:
    """True when the digit string passes the Luhn (mod 10) check."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        total += _LUHN_DOUBLE[d] if i & 1 else d
    return total % 10 == 0


def iban_ok(compact: str) -> bool:
    """True for an IBAN (no separators, upper case) of its country's length passing mod 97."""
    if _IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact.isalnum():
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _operational(text: str, start: int) -> bool:
    """An order/ticket/tracking/version label stands right before `start`."""
    return _OPERATIONAL_LABEL.search(text, max(0, start - _LOOKBACK), start) is not None


def _card_span(text: str, start: int, end: int) -> tuple[int, int] | None:
    """The Luhn-valid card inside a candidate run, allowing one short stray group at either end."""
    groups = [(m.start() + start, m.end() + start) for m in re.finditer(r"\d+", text[start:end])]
    options = [(0, len(groups))]
    if len(groups) > 1:
        if groups[-1][1] - groups[-1][0] <= 3:
            options.append((0, len(groups) - 1))
        if groups[0][1] - groups[0][0] <= 3:
            options.append((1, len(groups)))
    for i, j in options:
        s, e = groups[i][0], groups[j - 1][1]
        digits = _SEP.sub("", text[s:e])
        if 13 <= len(digits) <= 19 and digits[0] in "23456" and luhn_ok(digits):
            return s, e
    return None


def _iban_span(text: str, start: int, end: int) -> tuple[int, int] | None:
    country = text[start:start + 2].upper()
    want = _IBAN_LENGTHS.get(country)
    if want is None:
        return None
    count, pos = 0, start
    while pos < end and count < want:
        if text[pos].isalnum():
            count += 1
        pos += 1
    if count != want or (pos < len(text) and text[pos].isalnum()):
        return None
    compact = _SEP.sub("", text[start:pos]).upper()
    return (start, pos) if iban_ok(compact) else None


def _intl_end(text: str, start: int, end: int) -> int | None:
    """End of a well-formed international number inside text[start:end] (8-15 digits), else None.

    Stops at the first odd separator (" - ", "  ", "--") and drops trailing groups beyond 15 digits,
    so "+44 20 7946 0958 2025" keeps only the phone number.
    """
    pos = start + 1 if text[start] == "+" else start
    groups: list[tuple[int, int]] = []  # (end offset, digits so far)
    digits = 0
    for m in _PHONE_TOKEN.finditer(text, pos, end):
        tok = m.group()
        if tok[0].isdigit():
            digits += len(tok)
            groups.append((m.end(), digits))
        elif groups and tok not in _PHONE_SEPARATORS:
            break
    while groups and groups[-1][1] > 15:
        groups.pop()
    if not groups or groups[-1][1] < 8:
        return None
    return groups[-1][0]


def _phone_end(m: re.Match[str]) -> int | None:
    """End of the phone number in a candidate match, or None when it is not one."""
    if m.group("intl"):
        end = _intl_end(m.string, m.start("intl"), m.end("intl"))
        return m.end() if end == m.end("intl") else end
    if m.group("nat"):
        digits = sum(ch.isdigit() for ch in m.group("nat"))
        return m.end() if 9 <= digits <= 13 else None
    return m.end()  # NANP: the pattern fixes the shape


def _trim_url(text: str, start: int, end: int) -> int:
    while end > start and text[end - 1] in _URL_TRAIL:
        if text[end - 1] == ")" and text.count("(", start, end) >= text.count(")", start, end):
            break
        end -= 1
    return end


# --- the redactor ---------------------------------------------------------------------------------
Candidate = tuple[int, int, int, str]  # (start, end, priority, kind)


class PiiRedactor:
    """Finds and replaces PII; `keep_handles` are brand handles that stay as they are."""

    def __init__(self, keep_handles: Iterable[str] = ()):
        self.keep_handles = frozenset(h.strip().lstrip("@").lower() for h in keep_handles if h.strip())

    # detection -------------------------------------------------------------------------------------
    def find(self, text: str) -> list[PiiSpan]:
        """Non-overlapping PII spans, sorted by position."""
        if not text:
            return []
        cands: list[Candidate] = []
        if "@" in text:
            self._emails(text, cands)
            self._handles(text, cands)
        elif "[at]" in text or "(at)" in text or "[AT]" in text:
            self._add(cands, _EMAIL_OBFUSCATED.finditer(text), "EMAIL")
        if "/" in text or "www" in text or "WWW" in text:
            self._urls(text, cands)
        if _DIGIT.search(text) is not None:
            self._numbers(text, cands)
        if not cands:
            return []
        return [PiiSpan(kind, s, e, text[s:e]) for s, e, _, kind in self._resolve(cands)]

    def redact(self, text: str) -> tuple[str, Counter[str]]:
        """`text` with each PII span replaced by its placeholder, and the counts by kind."""
        spans = self.find(text)
        counts: Counter[str] = Counter()
        if not spans:
            return text, counts
        parts: list[str] = []
        pos = 0
        for span in spans:
            parts.append(text[pos:span.start])
            parts.append(PLACEHOLDERS[span.kind])
            counts[span.kind] += 1
            pos = span.end
        parts.append(text[pos:])
        return "".join(parts), counts

    # detectors -------------------------------------------------------------------------------------
    @staticmethod
    def _add(cands: list[Candidate], matches: Iterator[re.Match[str]], kind: str) -> None:
        prio = _PRIORITY[kind]
        cands.extend((m.start(), m.end(), prio, kind) for m in matches)

    def _emails(self, text: str, cands: list[Candidate]) -> None:
        self._add(cands, _EMAIL.finditer(text), "EMAIL")
        if "at]" in text or "(at)" in text or "AT]" in text:
            self._add(cands, _EMAIL_OBFUSCATED.finditer(text), "EMAIL")

    def _handles(self, text: str, cands: list[Candidate]) -> None:
        prio = _PRIORITY["HANDLE"]
        for m in _HANDLE.finditer(text):
            name = m.group(1)
            if name.lower() in self.keep_handles or _HANDLE_NOT.match(name):
                continue
            cands.append((m.start(), m.end(), prio, "HANDLE"))

    @staticmethod
    def _urls(text: str, cands: list[Candidate]) -> None:
        prio = _PRIORITY["URL"]
        for m in _URL.finditer(text):
            end = _trim_url(text, m.start(), m.end())
            if end - m.start() > 4:
                cands.append((m.start(), end, prio, "URL"))

    def _numbers(self, text: str, cands: list[Candidate]) -> None:
        self._ibans(text, cands)
        self._cards(text, cands)
        if "-" in text:
            self._add(cands, _SSN.finditer(text), "SSN")
        if "." in text:
            self._ips(text, cands)
        self._accounts(text, cands)
        self._phones(text, cands)
        self._addresses(text, cands)

    @staticmethod
    def _ibans(text: str, cands: list[Candidate]) -> None:
        prio = _PRIORITY["IBAN"]
        for m in _IBAN.finditer(text):
            span = _iban_span(text, m.start(), m.end())
            if span:
                cands.append((span[0], span[1], prio, "IBAN"))

    @staticmethod
    def _cards(text: str, cands: list[Candidate]) -> None:
        prio = _PRIORITY["CARD"]
        for m in _CARD.finditer(text):
            span = _card_span(text, m.start(), m.end())
            if span and not _operational(text, m.start()):
                cands.append((span[0], span[1], prio, "CARD"))

    @staticmethod
    def _ips(text: str, cands: list[Candidate]) -> None:
        prio = _PRIORITY["IP"]
        for m in _IP.finditer(text):
            if not _operational(text, m.start()):
                cands.append((m.start(), m.end(), prio, "IP"))

    @staticmethod
    def _accounts(text: str, cands: list[Candidate]) -> None:
        prio = _PRIORITY["ACCOUNT"]
        for m in _ACCOUNT.finditer(text):
            cands.append((m.start("num"), m.end("num"), prio, "ACCOUNT"))

    @staticmethod
    def _phones(text: str, cands: list[Candidate]) -> None:
        prio = _PRIORITY["PHONE"]
        for m in _PHONE.finditer(text):
            end = _phone_end(m)
            if end is not None and not _operational(text, m.start()):
                cands.append((m.start(), end, prio, "PHONE"))

    @staticmethod
    def _addresses(text: str, cands: list[Candidate]) -> None:
        prio = _PRIORITY["ADDRESS"]
        for rx in (_ADDRESS, _ADDRESS_OTHER):
            cands.extend((m.start(), m.end(), prio, "ADDRESS") for m in rx.finditer(text))

    @staticmethod
    def _resolve(cands: list[Candidate]) -> list[Candidate]:
        """Greedy by (priority, longest, leftmost); drop candidates that overlap an accepted one."""
        if len(cands) == 1:
            return cands
        cands.sort(key=lambda c: (c[2], c[0] - c[1], c[0]))
        taken: list[Candidate] = []
        for c in cands:
            if all(c[1] <= t[0] or c[0] >= t[1] for t in taken):
                taken.append(c)
        taken.sort()
        return taken


# --- leak check -----------------------------------------------------------------------------------
_LEAK_REDACTORS: dict[frozenset[str], PiiRedactor] = {}


def _configured_brand_handles() -> tuple[str, ...]:
    try:
        from replyloop.settings import get_settings

        return (get_settings().brand_handle,)
    except Exception:  # settings unavailable (stand-alone use): no brand handle to keep
        return ()


def find_leaks(text: str, *, keep_handles: Iterable[str] | None = None) -> list[PiiSpan]:
    """PII still present in `text` (typed placeholders are not leaks).

    The configured brand handle (`Settings.brand_handle`) is not a leak, as it is kept by the ingestion
    redactor; pass `keep_handles` to override.
    """
    handles = _configured_brand_handles() if keep_handles is None else tuple(keep_handles)
    key = frozenset(h.lstrip("@").lower() for h in handles)
    redactor = _LEAK_REDACTORS.get(key)
    if redactor is None:
        redactor = _LEAK_REDACTORS.setdefault(key, PiiRedactor(keep_handles=key))
    return redactor.find(text)


# --- scoring against a labelled set ---------------------------------------------------------------
class Finder(Protocol):
    def find(self, text: str) -> list[PiiSpan]: ...


def _labelled_spans(case: Mapping[str, Any]) -> list[tuple[str, int, int]]:
    """Every occurrence of every labelled substring, as (kind, start, end)."""
    text = case["text"]
    out: set[tuple[str, int, int]] = set()
    for span in case["spans"]:
        needle, pos = span["text"], text.find(span["text"])
        if pos < 0:
            raise ValueError(f"case {case.get('id')}: labelled span {needle!r} not in text")
        while pos >= 0:
            out.add((span["kind"], pos, pos + len(needle)))
            pos = text.find(needle, pos + 1)
    return sorted(out, key=lambda s: s[1])


def _covers(det: PiiSpan, kind: str, start: int, end: int) -> bool:
    overlap = min(det.end, end) - max(det.start, start)
    return det.kind == kind and overlap > 0 and overlap >= 0.8 * (end - start)


def _ratio(num: int, den: int) -> float:
    return num / den if den else 1.0


def score(redactor: Finder, cases: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Precision/recall of `redactor.find` on labelled cases, overall and per kind.

    A labelled span is found when a detection of the same kind overlaps it and covers >= 80 % of its
    characters. A detection is correct when it finds some labelled span that way; every other detection
    (overlapping nothing, wrong kind, or too partial) counts against precision.
    """
    labelled: Counter[str] = Counter()
    found: Counter[str] = Counter()
    detected: Counter[str] = Counter()
    correct: Counter[str] = Counter()
    misses: list[dict[str, str]] = []
    false_positives: list[dict[str, str]] = []
    for case in cases:
        gold = _labelled_spans(case)
        dets = redactor.find(case["text"])
        for kind, s, e in gold:
            labelled[kind] += 1
            if any(_covers(d, kind, s, e) for d in dets):
                found[kind] += 1
            else:
                misses.append({"id": case.get("id", ""), "kind": kind, "text": case["text"][s:e]})
        for d in dets:
            detected[d.kind] += 1
            if any(_covers(d, kind, s, e) for kind, s, e in gold):
                correct[d.kind] += 1
            else:
                false_positives.append({"id": case.get("id", ""), "kind": d.kind, "text": d.text})
    kinds = sorted(set(labelled) | set(detected), key=lambda k: _PRIORITY.get(k, len(_PRIORITY)))
    per_kind = {
        k: {"labelled": labelled[k], "found": found[k], "detected": detected[k], "correct": correct[k],
            "recall": _ratio(found[k], labelled[k]), "precision": _ratio(correct[k], detected[k])}
        for k in kinds
    }
    n_lab, n_found = sum(labelled.values()), sum(found.values())
    n_det, n_ok = sum(detected.values()), sum(correct.values())
    overall = {"labelled": n_lab, "found": n_found, "detected": n_det, "correct": n_ok,
               "recall": _ratio(n_found, n_lab), "precision": _ratio(n_ok, n_det)}
    p, r = overall["precision"], overall["recall"]
    overall["f1"] = 2 * p * r / (p + r) if p + r else 0.0
    return {"cases": len(cases), "overall": overall, "per_kind": per_kind,
            "misses": misses, "false_positives": false_positives}


class NaiveRedactor:
    """Baseline for benchmarks: three plain regexes (email, dashed US phone, 16 digits)."""

    _PATTERNS = (("EMAIL", re.compile(r"\S+@\S+")), ("PHONE", re.compile(r"\d{3}-\d{3}-\d{4}")),
                 ("CARD", re.compile(r"\d{16}")))

    def find(self, text: str) -> list[PiiSpan]:
        spans = [PiiSpan(kind, m.start(), m.end(), m.group())
                 for kind, rx in self._PATTERNS for m in rx.finditer(text)]
        return sorted(spans, key=lambda s: s.start)

    def redact(self, text: str) -> tuple[str, Counter[str]]:
        counts: Counter[str] = Counter()
        for kind, rx in self._PATTERNS:
            text, n = rx.subn(PLACEHOLDERS[kind], text)
            if n:
                counts[kind] += n
        return text, counts
