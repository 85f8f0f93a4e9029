"""PII detection and redaction for customer-service messages (tweets, DMs).

Every detected span is replaced by a typed placeholder, so the fine-tuned model learns *where* personal
data goes in a conversation without ever seeing it:

=========  ===========  =============================================================================
kind       placeholder  what is redacted
=========  ===========  =============================================================================
EMAIL      [EMAIL]      ``name+tag@sub.domain.tld`` (a TLD is required); ``name [at] domain [dot] com``
PHONE      [PHONE]      international (``+44 20 7946 0958``, ``0033 1 23 45 67 89``, ``+1 (415) 555-0132``),
                        North-American (``415-555-0132``, ``(415) 555 0132``, ``415.555.0132``) and national
                        numbers with a trunk 0 (``07700 900123``, ``030/12345678``); 8-15 digits in all
CARD       [CARD]       13-19 digits, plain or grouped with spaces/dashes, passing the Luhn check and
                        starting like a payment card (first digit 2-6)
IBAN       [IBAN]       country code + check digits + BBAN, spaced, dashed or compact, of the country's
                        length and passing the ISO 13616 mod-97 check
ACCOUNT    [ACCOUNT]    6-20 digits within three words after an account keyword (account/acct/acc/a/c no./
                        member id/customer number/loyalty/rewards/policy...); the keyword itself stays
SSN        [SSN]        US social security numbers: ``123-45-6789``; spaced or plain only after "SSN" /
                        "social security"
URL        [URL]        ``http(s)://...``, ``www....`` and bare domains *with a path* (``bit.ly/xyz``,
                        ``t.co/abc``, ``pic.twitter.com/...``)
HANDLE     [HANDLE]     ``@customer_handle`` (Twitter/X syntax, also ``.@handle``); the brand handles passed
                        as ``keep_handles`` stay verbatim (case-insensitive, with or without ``@``)
ADDRESS    [ADDRESS]    number + street name + suffix (``221B Baker Street``, ``1600 Pennsylvania Ave NW``),
                        with a unit before or after (``Flat 3,``, ``Apt 4B``, ``Suite 200``, ``#12``) and a
                        city + state/ZIP or UK postcode (``Springfield, IL 62704``, ``London NW1 6XE``);
                        German (``Hauptstraße 5, 10115 Berlin``), French (``12 rue de Rivoli``) and Spanish
                        (``Calle Mayor 5``) forms; P.O. boxes; UK postcodes on their own (``SW1A 1AA``)
IP         [IP]         IPv4 addresses (unless labelled as a version: ``firmware 2.4.1.10``)
=========  ===========  =============================================================================

What is *not* PII here (decisions):

* order, ticket, case, invoice, booking, reference, RMA and **tracking numbers** are kept: they identify a
  transaction with the brand rather than a person, and they are exactly what agents ask for. A number
  right after such a label is never taken for a phone, card or IP (``order no. 4155550132``).
* prices, dates, times, percentages, quantities, years, short numbers, model and part numbers
  (``XPS 13 9310``, ``RTX 4090``, ``HP14 2GB``), hashtags, emoticons (``@_@``, ``:-@``), ``@10am`` and
  the last four digits of a card (``card ending 4242``) are kept.
* a 13-19 digit number failing the Luhn check is not a card (it may still be an ACCOUNT by context).
* a bare domain without a path (``acme.com``) names a company; with a path, ``www.`` or a scheme it is
  a URL (links point at a person's photos, profiles, receipts).
* a city on its own is not an address; it is only redacted as part of a street address that carries a
  state + ZIP or a postcode. A US ZIP code on its own is kept (5 digits are too ambiguous).
* email-like text without a domain (``john@``, ``user@localhost``) is kept.
* every phone number is redacted, the brand's own hotline included: the two cannot be told apart.
* one-time codes, PINs and CVVs on their own (3-6 digits) are kept: short numbers are too ambiguous.
* numbers are ASCII digits; names and street names may be any script.

`find_leaks` runs the same detectors on text that should already be redacted (ingestion validation, the
model's PII-leak metric); the configured brand handle is not a leak. `score` measures precision/recall
against a labelled set (tests/data/pii_cases.jsonl) and is shared by the tests and bench/pii.py.

Overlaps are resolved deterministically: a candidate nested inside a longer one is dropped (a URL that
carries an email is redacted as one URL); the rest are taken by kind priority (EMAIL, URL, IBAN, CARD,
SSN, IP, ACCOUNT, PHONE, ADDRESS, HANDLE), then longest first, then leftmost, and a candidate overlapping
an accepted one is dropped. Redaction is idempotent: placeholders hold no digit, ``@``, ``/`` or ``.``.

Speed (millions of short messages): scanning a tweet once per pattern costs more than the whole budget,
so the heavy patterns are only *anchored* where they can start: the ``@`` signs (emails, handles), the
``/`` and ``www.`` positions (URLs), one scan for numeric chunks (cards, phones, SSNs, IPs, IBANs, English
addresses and postcodes are dispatched by the chunk's digit count and neighbours), and keyword hints
(account numbers, continental addresses). A message without a digit, ``@``, ``/`` or ``www`` costs a few
substring tests. Validation (Luhn, mod 97, digit counts, context labels) runs on candidates only.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["PLACEHOLDERS", "KINDS", "REPLY_KINDS", "PiiSpan", "PiiRedactor", "find_leaks", "check_reply",
           "score", "NaiveRedactor", "luhn_ok", "iban_ok"]

PLACEHOLDERS: dict[str, str] = {
    "EMAIL": "[EMAIL]", "PHONE": "[PHONE]", "CARD": "[CARD]", "URL": "[URL]", "HANDLE": "[HANDLE]",
    "ADDRESS": "[ADDRESS]", "ACCOUNT": "[ACCOUNT]", "IBAN": "[IBAN]", "IP": "[IP]", "SSN": "[SSN]",
}
# Resolution order for overlapping candidates (most specific first).
KINDS: tuple[str, ...] = (
    "EMAIL", "URL", "IBAN", "CARD", "SSN", "IP", "ACCOUNT", "PHONE", "ADDRESS", "HANDLE")
_PRIORITY = {kind: i for i, kind in enumerate(KINDS)}


@dataclass(frozen=True)
class PiiSpan:
    kind: str
    start: int
    end: int
    text: str


# === patterns =====================================================================================
_DIGIT = re.compile(r"[0-9]")

# --- EMAIL / HANDLE (anchored at "@") ---
_LOCAL_CHARS = frozenset("._%+-")
_EMAIL_DOMAIN = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![A-Za-z0-9-]|\.[A-Za-z0-9])")
_EMAIL_OBFUSCATED = re.compile(
    r"(?i)(?<![\w.])[a-z0-9][\w.+-]{0,63}\s?[\[(]\s?at\s?[\])]\s?"
    r"(?:[a-z0-9-]+\s?(?:\.|[\[(]\s?dot\s?[\])])\s?)+[a-z]{2,24}\b")
_HANDLE_NAME = re.compile(r"[A-Za-z0-9_]{1,30}(?![A-Za-z0-9_@])")
_HANDLE_NOT = re.compile(r"(?i)\d{1,2}(?:[:.h]\d{2})?(?:am|pm|h)?$")  # "@10am", "@9", "@7pm": times

# --- URL (anchored at "/" and "www.") ---
_URL_CH = r"[A-Za-z0-9\-._~:/?#@!$&*+,;=%()']"
_TLDS = ("com|net|org|edu|gov|mil|int|info|biz|app|dev|ai|io|co|ly|me|gl|gd|to|tv|fm|be|in|us|uk|de|fr|es|"
         "it|nl|eu|ca|au|nz|ie|ch|at|se|no|dk|fi|pl|pt|br|mx|jp|cn|ru|link|page|shop|store|online|site|xyz|"
         "tech|cloud|news|blog|live|click|am|ms|cc|sh|gg|ws|is|li|la|id|su")
_URL = re.compile(
    rf"(?i)(?:(?:https?|ftp)://{_URL_CH}+"
    rf"|(?<![\w.@/%+-])www\d?\.[a-z0-9-]+(?:\.[a-z0-9-]+)+{_URL_CH}*"
    rf"|(?<![\w.@/%+-])(?:[a-z0-9](?:[a-z0-9-]{{0,61}}[a-z0-9])?\.)+(?:{_TLDS})/{_URL_CH}*)")
_URL_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-")
_URL_TRAIL = ".,;:!?'\")]}*"

# --- numeric chunks: digits with the separators phones, cards, IPs and IBANs use ---
_CHUNK = re.compile(r"[0-9][0-9 ().+/-]*")  # a plain charset first: the scan runs in C
_CHUNK_TRIM = " (.+/-"  # not a trailing ")": "(415)" ends with it

_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?:[ -]?[A-Za-z0-9]){10,32}", re.A)
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
_CARD = re.compile(r"(?<![\d+#.,/])(?<!\d[ -])\d(?:[ -]?\d){12,18}(?![ -]?\d)", re.A)
_SEP = re.compile(r"[ -]+")
_DIGIT_RUN = re.compile(r"\d+")
_SSN = re.compile(r"(?<![\d#-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])", re.A)
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IP = re.compile(rf"(?<![\w.])(?:{_OCTET}\.){{3}}{_OCTET}(?![\w]|\.\d)", re.A)

# PHONE: international (+cc / 00cc), North-American, national with a trunk 0. The international form
# is a plain run of digits and separators, cut to a sane shape by `_intl_end`.
_PHONE = re.compile(
    r"""
    (?<![\w+#$€£¥@/.,-])(?<!\d\ )
    (?:
        (?P<intl>(?:\(?\+\ ?|\b00)[1-9][\d().\ -]*\d)
      | (?P<nanp>(?:\b1[ .-]?)?(?:\(\d{3}\)|\b[2-9]\d{2})[ .-]?[2-9]\d{2}[ .-]?\d{4})
      | (?P<nat>(?:\(0\d{1,4}\)|\b0\d{1,4})(?P<s>\ ?[./-]?\ ?)\d{2,8}(?:(?P=s)\d{2,8}){0,3})
    )
    (?:\ ?(?:ext\.?|extension|x)\ ?\d{1,5})?
    (?![\w@%]|[./-]\d|:\d)
    """,
    re.X | re.A,  # ASCII \d and \w: faster, and phone numbers are ASCII
)
_PHONE_TOKEN = re.compile(r"\d+|\D+")
_PHONE_SEPARATORS = frozenset({" ", ".", "-", "(", ")", " (", ") ", ")-", ")."})

# --- ADDRESS ---
_SUFFIX_FULL = ("street road avenue lane boulevard drive way court place terrace crescent close square parkway "
                "highway circle loop row gardens grove mews trail alley plaza walk hill").split()
_SUFFIX_ABBR = "st rd ave av ln blvd dr ct pl terr cres sq pkwy hwy cir gdns trl".split()
_SUFFIX_WORDS = frozenset(_SUFFIX_FULL + _SUFFIX_ABBR)  # a quick pre-check before the address pattern
_LETTERS = re.compile(r"[a-z]+")
_SUFFIX = rf"(?:(?i:{'|'.join(_SUFFIX_FULL)})\b|(?i:{'|'.join(_SUFFIX_ABBR)})\b\.?)"
# Words that make "<number> <words> <suffix>" a sentence, not an address ("3 days on the road").
_NOT_STREET = frozenset(
    "the a an on in at to of for from by with and or but my your our their his her its this that these those "
    "is are was were be been it i we you they me us them so as if than then just only per each every down up "
    "across along around over under off via into onto near next last more less day days hour hours hrs min "
    "mins minute minutes week weeks wks month months year years yrs time times item items pcs pieces boxes "
    "order orders ticket tickets people second seconds secs block blocks mile miles km meter meters kids "
    "star stars euro euros dollar dollars pound pounds bucks".split()
)
_UK_POSTCODE = r"(?:[A-Z]{1,2}\d[A-Z\d]?|GIR)\ ?\d[ABD-HJLNP-UW-Z]{2}(?!\w)(?<!\d[GTP]B)"  # not "8GB"
_UNIT = r"(?i:apt|apartment|suite|ste|unit|flat|fl|floor|rm|room|bldg|building)\.?\s?\#?[A-Za-z0-9-]{1,6}\b"
_CITY = r"[A-Z][a-zà-ÿ]+(?:[ -][A-Z][a-zà-ÿ]+){0,2}"
_TAIL = (rf"(?:,?\s(?:{_CITY},?\s)?(?:[A-Z]{{2}}\s\d{{5}}(?:-\d{{4}})?\b|{_UK_POSTCODE})"
         rf"|,?\s\d{{5}}\s[A-Z][a-zà-ÿ]+(?:[ -][A-Z][a-zà-ÿ]+)?)")
_ADDRESS = re.compile(
    rf"""
    (?<![\w#$€£.,/-])
    \d{{1,5}}[A-Za-z]?(?:[-/]\d{{1,5}}[A-Za-z]?)?\s        # "221B", "12-14", "2/18"
    (?P<name>(?:[^\W_][\w'’.-]*\s){{1,4}}?)               # "Baker ", "N Lake Shore "
    {_SUFFIX}
    (?:\s(?i:n|s|e|w|ne|nw|se|sw|north|south|east|west)\b)?   # "Ave NW", "Avenue South"
    (?:,?\s{_UNIT}|,?\s\#\d{{1,5}}[A-Za-z]?\b)?            # "Apt 4B", "Suite 200", "#12"
    (?:{_TAIL})?
    """,
    re.X,
)
_UNIT_BEFORE = re.compile(rf"\b{_UNIT},?\s$")  # "Flat 3, " right before the house number
_POSTCODE = re.compile(rf"(?<![\w-]){_UK_POSTCODE}", re.X)
_ADDRESS_CONTINENTAL = re.compile(
    rf"""
    (?<![\w-])(?:                                                      # Hauptstraße 5 / 12 Hauptstraße
        [A-ZÄÖÜ][\wäöüß-]*(?i:stra(?:ß|ss)e|str\.|weg|allee|platz|gasse|damm|ufer|ring)
        (?:\s[A-ZÄÖÜ][\wäöüß-]*)?\s\d{{1,4}}[a-z]?\b
      | [A-ZÄÖÜ][\wäöüß-]*\s(?:Stra(?:ß|ss)e|Str\.|Weg|Allee|Platz|Gasse|Damm|Ufer|Ring)\s\d{{1,4}}[a-z]?\b
      | \d{{1,4}}[a-z]?\s[A-ZÄÖÜ][\wäöüß-]*(?i:stra(?:ß|ss)e)\b
    )(?:{_TAIL})?
    |(?<![\w-])\d{{1,4}}(?:\s?(?:bis|ter))?,?\s(?:rue|chemin|impasse|quai|allée|boulevard|bd|avenue|av\.)
        (?:\s(?:de|du|des|la|le))?(?:\s?(?:l'|d'))?\s?                                   # 12 rue de Rivoli
        [A-ZÉÈ][\w'’-]+(?:\s[A-ZÉÈ][\w'’-]+){{0,2}}
        (?:,?\s\d{{5}}\s[A-Z][a-zà-ÿ]+)?
    |(?<![\w-])(?:Calle|C/|Avenida|Avda\.|Plaza|Paseo|Carrer|Rua|Piazza|Viale)              # Calle Mayor 5
        \s(?:(?:de|del|la|los|las|di|della|do|da)\s){{0,2}}
        [A-ZÁÉÍÓÚ][\wáéíóúñ'’-]+(?:\s[A-ZÁÉÍÓÚ][\wáéíóúñ'’-]+){{0,2}}
        ,?\s\d{{1,4}}[A-Za-z]?\b(?:,?\s\d{{1,2}}º?\s?[A-Za-z]?\b)?
        (?:,?\s\d{{5}}\s[A-Z][a-zà-ÿ]+)?
    |(?i:\bP\.?\s?O\.?\s?Box\s\d{{1,6}}\b)
    """,
    re.X,
)
# Cheap hints, checked on the words around a house number, that a continental form may be present.
_DE_HINTS = ("straße", "strasse", "str.", "weg", "allee", "platz", "gasse", "damm", "ufer", "ring", "box")
_DE_LAST_CHARS = frozenset("eEgGzZmMrR.xX")
_FR_WORDS = ("rue ", "chemin ", "impasse ", "quai ", "allée ", "boulevard ", "bd ", "avenue ", "av. ")
_ES_BEFORE = re.compile(r"(?:Calle|C/|Avenida|Avda\.|Plaza|Paseo|Carrer|Rua|Piazza|Viale)\s")
_HOUSE_NUMBER_NEXT = frozenset(" abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")

# --- ACCOUNT (anchored at a keyword hint) ---
_ACCOUNT = re.compile(
    r"(?i)\b(?:account|acct|acc|a/c|member(?:ship)?|customer|client|loyalty|rewards|subscriber|policy|"
    r"contract|kundennummer|kundennr)\b\.?"
    r"(?:\s*(?:no\b\.?|nr\b\.?|num\b\.?|number\b|id\b|#|:|is\b|was\b|=|-))*\s*"
    r"(?P<num>(?-i:[A-Z]{1,4})[ -]?\d{2,}(?:[ -]\d{2,}){0,5}|\d{2,}(?:[ -]\d{2,}){0,5})(?!\d)"
)
# SSN written with spaces or without separators: only after the keyword.
_SSN_CONTEXT = re.compile(
    r"(?i)\b(?:ssn|social\ssecurity(?:\s(?:number|no\b\.?|\#))?)\W{0,4}(?:is\s|was\s)?"
    r"(?P<num>\d{3}[ -]?\d{2}[ -]?\d{4})(?!\d)")
_NUMBER_KEYWORDS = ("acc", "a/c", "member", "customer", "client", "loyalty", "rewards", "subscriber", "policy",
                    "contract", "kunden", "ssn", "social")  # word prefixes, lower case

# --- context: a label that makes the following number operational (order, tracking, version...) ---
_OPERATIONAL_WORDS = frozenset(
    "order ord invoice inv ticket case ref reference tracking track trk confirmation conf booking "
    "reservation shipment parcel package consignment serial s/n sku item model part po rma claim receipt "
    "transaction txn awb waybill flight gate seat version firmware build fw".split())
_LABEL_FILLERS = frozenset("no num number nr id code is was".split())
_LABEL_PUNCT = ".:#-=,;()'\""
_LOOKBACK = 40


# === validators ===================================================================================
_LUHN_DOUBLE = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


def luhn_ok(digits: str) -> bool:
    """True when the digit string passes the Luhn (mod 10) check."""
    if not (digits.isascii() and digits.isdigit()):
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        total += _LUHN_DOUBLE[d] if i & 1 else d
    return total % 10 == 0


def iban_ok(compact: str) -> bool:
    """True for an IBAN (no separators, upper case) of its country's length passing mod 97."""
    if _IBAN_LENGTHS.get(compact[:2]) != len(compact) or not (compact.isascii() and compact.isalnum()):
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _operational(low: str, start: int) -> bool:
    """An order/ticket/tracking/version label (optionally "no."/"number"/"is") stands right before `start`.

    `low` is the lower-cased message.
    """
    words = low[max(0, start - _LOOKBACK):start].rsplit(None, 4)
    while words:
        word = words.pop().strip(_LABEL_PUNCT)
        if word and word not in _LABEL_FILLERS:
            return word in _OPERATIONAL_WORDS
    return False


def _card_span(text: str, start: int, end: int) -> tuple[int, int] | None:
    """The Luhn-valid card in a candidate run, allowing one stray group of <= 3 digits at either end."""
    groups = [(m.start(), m.end()) for m in _DIGIT_RUN.finditer(text, start, end)]
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
    """Cut the candidate to its country's IBAN length (on an alphanumeric boundary) and check mod 97."""
    want = _IBAN_LENGTHS.get(text[start:start + 2].upper())
    if want is None:
        return None
    count, pos = 0, start
    while pos < end and count < want:
        if text[pos].isalnum():
            count += 1
        pos += 1
    if count != want or (pos < len(text) and text[pos].isalnum()):
        return None
    return (start, pos) if iban_ok(_SEP.sub("", text[start:pos]).upper()) else None


def _intl_end(text: str, start: int, end: int) -> int | None:
    """End of a well-formed international number in text[start:end] (8-15 digits), else None.

    Stops at the first odd separator (" - ", "  ", "--") and drops trailing groups beyond 15 digits,
    so "+44 20 7946 0958 2025" keeps only the phone number.
    """
    groups: list[tuple[int, int]] = []  # (end offset, digits so far)
    digits = 0
    for m in _PHONE_TOKEN.finditer(text, start, end):
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
    if intl := m.group("intl"):
        digits = _count_digits(intl)
        if 8 <= digits <= 15 and "  " not in intl and "- " not in intl and " -" not in intl:
            return m.end()  # the common, well-formed case
        end = _intl_end(m.string, m.start("intl"), m.end("intl"))
        return m.end() if end == m.end("intl") else end
    if nat := m.group("nat"):
        return m.end() if 9 <= _count_digits(nat) <= 13 else None
    return m.end()  # NANP: the pattern fixes the shape


def _url_end(text: str, start: int, end: int) -> int:
    """Drop trailing punctuation (keeping a closing parenthesis that has its opening one)."""
    while end > start and text[end - 1] in _URL_TRAIL:
        if text[end - 1] == ")" and text.count("(", start, end) >= text.count(")", start, end):
            break
        end -= 1
    return end


# === the redactor =================================================================================
Candidate = tuple[int, int, int, str]  # (start, end, priority, kind)


class PiiRedactor:
    """Finds and replaces PII; `keep_handles` are brand handles that stay as they are."""

    def __init__(self, keep_handles: Iterable[str] = ()):
        self.keep_handles = frozenset(h.strip().lstrip("@").lower() for h in keep_handles if h.strip())

    def find(self, text: str) -> list[PiiSpan]:
        """Non-overlapping PII spans, sorted by position."""
        return [PiiSpan(kind, s, e, text[s:e]) for s, e, _, kind in self._spans(text)]

    def redact(self, text: str) -> tuple[str, Counter[str]]:
        """`text` with each PII span replaced by its placeholder, and the counts by kind."""
        spans = self._spans(text)
        counts: Counter[str] = Counter()
        if not spans:
            return text, counts
        parts: list[str] = []
        pos = 0
        for start, end, _, kind in spans:
            parts.append(text[pos:start])
            parts.append(PLACEHOLDERS[kind])
            counts[kind] += 1
            pos = end
        parts.append(text[pos:])
        return "".join(parts), counts

    def _spans(self, text: str) -> list[Candidate]:
        """Run the detectors their cheap pre-checks allow, then resolve overlaps."""
        if not text:
            return []
        cands: list[Candidate] = []
        if "@" in text:
            self._at_signs(text, cands)
        low = _lower(text)
        if "at]" in low or "(at)" in low:
            _add(cands, "EMAIL", (m.span() for m in _EMAIL_OBFUSCATED.finditer(text)))
        if "/" in text or "www" in low:
            _urls(text, low, cands)
        if _DIGIT.search(text) is not None:
            if _numbers(text, low, cands):
                _add(cands, "ADDRESS", (m.span() for m in _ADDRESS_CONTINENTAL.finditer(text)))
        return _resolve(cands) if cands else cands

    def _at_signs(self, text: str, cands: list[Candidate]) -> None:
        """Emails (local part before the "@", domain after) and handles ("@" after a non-word char)."""
        at = text.find("@")
        while at >= 0:
            nxt = at + 1
            prev = text[at - 1] if at else " "
            local = prev.isalnum() or prev in _LOCAL_CHARS
            if local and (dm := _EMAIL_DOMAIN.match(text, at + 1)) and (start := _local_start(text, at)) < at:
                cands.append((start, dm.end(), _PRIORITY["EMAIL"], "EMAIL"))
                nxt = dm.end()
            elif not (prev.isalnum() or prev in "_@") and (hm := _HANDLE_NAME.match(text, at + 1)):
                name = hm.group()
                if name.lower() not in self.keep_handles and not _HANDLE_NOT.match(name):
                    cands.append((at, hm.end(), _PRIORITY["HANDLE"], "HANDLE"))
                nxt = hm.end()
            at = text.find("@", nxt)


def _lower(text: str) -> str:
    """Lower-cased text with the same length (positions in it are positions in `text`)."""
    low = text.lower()
    if len(low) != len(text):  # e.g. "İ" lower-cases to two code points
        low = "".join(ch.lower() if len(ch.lower()) == 1 else ch for ch in text)
    return low


def _add(cands: list[Candidate], kind: str, spans: Iterable[tuple[int, int]]) -> None:
    prio = _PRIORITY[kind]
    cands.extend((s, e, prio, kind) for s, e in spans)


def _local_start(text: str, at: int) -> int:
    """Start of an email's local part ending at `at` (at most 64 chars, no leading/trailing dot)."""
    if text[at - 1] == ".":
        return at
    i = at
    while i > 0 and at - i < 64 and (text[i - 1].isalnum() or text[i - 1] in _LOCAL_CHARS):
        i -= 1
    while i < at and text[i] == ".":
        i += 1
    return i


def _urls(text: str, low: str, cands: list[Candidate]) -> None:
    """URLs, anchored at each "/" (scheme or bare domain with a path) and each "www."."""
    starts: list[int] = []
    slash = text.find("/")
    while slash >= 0:
        i = slash
        if i > 0 and text[i - 1] == ":":  # scheme://
            i -= 1
            while i > 0 and slash - i < 8 and text[i - 1].isalpha():
                i -= 1
        else:  # bare host before the path
            while i > 0 and slash - i < 80 and text[i - 1] in _URL_HOST_CHARS:
                i -= 1
        if i < slash:
            starts.append(i)
        slash = text.find("/", slash + 1)
    www = low.find("www")
    while www >= 0:
        starts.append(www)
        www = low.find("www", www + 3)
    covered = -1
    for start in sorted(set(starts)):
        if start < covered:
            continue
        m = _URL.match(text, start)
        if m:
            end = _url_end(text, start, m.end())
            if end - start > 4:
                cands.append((start, end, _PRIORITY["URL"], "URL"))
                covered = end


def _numbers(text: str, low: str, cands: list[Candidate]) -> bool:
    """Dispatch each numeric chunk to the detectors its shape allows.

    Returns whether a continental street form may stand next to a house number.
    """
    continental = False
    for chunk in _CHUNK.finditer(text):
        s = chunk.start()
        body = chunk.group().rstrip(_CHUNK_TRIM)
        e = s + len(body)
        lead = s  # include a "+", "(" or "(+" right before the digits: "+44 20...", "(415) 555..."
        if s and text[s - 1] in "+(":
            lead = s - 2 if s >= 2 and text[s - 2:s] == "(+" else s - 1
        digits = len(body) if body.isdigit() else _count_digits(body)
        if s >= 1 and text[s - 1].isalpha():  # letters glued to the digits: IBAN, UK postcode
            if _iban_or_postcode(text, s, cands) >= e:
                continue  # an IBAN covers the chunk
        if digits >= 6:
            _long_number(text, low, lead, s, e, body, digits, cands)
        if body.count(".") >= 3:
            _ips(text, low, s, e, cands)
        if digits <= 6 and lead == s:  # a house number may lead the chunk
            if text[e:e + 1] in _HOUSE_NUMBER_NEXT:
                _address_at(text, low, s, e, cands)  # "221B Baker Street", "12 Elm St"
            if not continental and _continental_hint(text, low, s, e):
                continental = True
    return continental


def _count_digits(body: str) -> int:
    return (len(body) - body.count(" ") - body.count("-") - body.count(".") - body.count("/")
            - body.count("(") - body.count(")") - body.count("+"))


def _long_number(text: str, low: str, lead: int, first: int, e: int, body: str, digits: int,
                 cands: list[Candidate]) -> None:
    """Chunks of 6+ digits (from `first`, with a "+"/"(" prefix from `lead`): accounts, cards, phones, SSNs."""
    _account_before(text, low, lead, cands)
    if digits >= 13:
        _cards(text, low, first, e, cands)
    if digits >= 8:
        _phones(text, low, lead, e, cands)
    if digits >= 9 and "-" in body:
        stop = min(len(text), e + 2)
        _add(cands, "SSN", (m.span() for m in _SSN.finditer(text, first, stop) if m.start() < e))


def _ips(text: str, low: str, s: int, e: int, cands: list[Candidate]) -> None:
    stop = min(len(text), e + 2)
    _add(cands, "IP", (m.span() for m in _IP.finditer(text, s, stop)
                       if m.start() < e and not _operational(low, m.start())))


def _iban_or_postcode(text: str, s: int, cands: list[Candidate]) -> int:
    """IBAN or UK postcode starting with the letters before the digits at `s`; returns the IBAN's end."""
    if s >= 2 and text[s - 2:s].upper() in _IBAN_LENGTHS and (end := _iban_at(text, s - 2, cands)):
        return end
    if "A" <= text[s - 1] <= "Z":
        _postcode_at(text, s, cands)
    return -1


def _continental_hint(text: str, low: str, start: int, end: int) -> bool:
    """A German/French/Spanish street word or "Box" stands next to the house number text[start:end]."""
    before = text[start - 2] if start >= 2 and text[start - 1] == " " else ""
    if before in _DE_LAST_CHARS and low.endswith(_DE_HINTS, max(0, start - 24), start - 1):
        return True  # "Hauptstraße 5", "Berliner Str. 12", "PO Box 12"
    if before.islower() and text[text.rfind(" ", 0, start - 1) + 1].isupper():
        if _ES_BEFORE.search(text, max(0, start - 40), start):  # "Calle Mayor 5", "Piazza di Spagna 10"
            return True
    nxt = text[end + 1:end + 2] if text[end:end + 1] == " " else ""
    if nxt.isupper():  # "12 Hauptstraße"
        return low[end + 1:end + 40].split(None, 1)[0].rstrip(",.").endswith(("straße", "strasse"))
    return nxt.islower() and low.startswith(_FR_WORDS, end + 1)  # "12 rue de Rivoli"


def _iban_at(text: str, start: int, cands: list[Candidate]) -> int:
    m = _IBAN.match(text, start)
    if m and (span := _iban_span(text, start, m.end())):
        cands.append((span[0], span[1], _PRIORITY["IBAN"], "IBAN"))
        return span[1]
    return 0


def _postcode_at(text: str, digit: int, cands: list[Candidate]) -> None:
    for start in (digit - 1, digit - 2):
        if start >= 0 and "A" <= text[start] <= "Z" and (m := _POSTCODE.match(text, start)):
            cands.append((start, m.end(), _PRIORITY["ADDRESS"], "ADDRESS"))
            return


def _cards(text: str, low: str, start: int, end: int, cands: list[Candidate]) -> None:
    for m in _CARD.finditer(text, start, end):
        if (span := _card_span(text, m.start(), m.end())) and not _operational(low, m.start()):
            cands.append((span[0], span[1], _PRIORITY["CARD"], "CARD"))


def _phones(text: str, low: str, start: int, end: int, cands: list[Candidate]) -> None:
    """Phones starting at the chunk start, or after a space/slash in it that does not follow a digit
    (a phone never starts inside a run of digit groups: "4111 1111 ..." is tried once)."""
    pos = start
    while True:
        m = _PHONE.match(text, pos)
        stop = _phone_end(m) if m else None
        if stop is not None and not _operational(low, pos):
            cands.append((pos, stop, _PRIORITY["PHONE"], "PHONE"))
            pos = stop
        pos = _next_phone_start(text, pos, end)
        if pos < 0:
            return


def _next_phone_start(text: str, pos: int, end: int) -> int:
    while True:
        space, slash = text.find(" ", pos, end), text.find("/", pos, end)
        if space < 0 and slash < 0:
            return -1
        sep = space if slash < 0 or 0 <= space < slash else slash
        if not text[sep - 1].isdigit():
            return sep + 1
        pos = sep + 1


def _address_at(text: str, low: str, start: int, end: int, cands: list[Candidate]) -> None:
    """An English street address led by the house number at `start`."""
    if _SUFFIX_WORDS.isdisjoint(_LETTERS.findall(low, end, end + 64)[:8]):
        return  # no street suffix in the next words: the cheap, common exit
    m = _ADDRESS.match(text, start)
    if m and not any(w.lower().strip(".'’") in _NOT_STREET for w in m.group("name").split()):
        unit = _UNIT_BEFORE.search(text, max(0, start - 24), start)
        cands.append((unit.start() if unit else start, m.end(), _PRIORITY["ADDRESS"], "ADDRESS"))


def _account_before(text: str, low: str, start: int, cands: list[Candidate]) -> None:
    """An account (or SSN) keyword among the 3 words before the number chunk: "acct# 00981234"."""
    lo = max(0, start - 40)
    for word in reversed(low[lo:start].rsplit(None, 3)):
        word = word.lstrip(_LABEL_PUNCT)
        if not word.startswith(_NUMBER_KEYWORDS):
            continue
        pos = low.rfind(word, lo, start)
        if word.startswith(("ssn", "social")):
            if m := _SSN_CONTEXT.match(text, pos):
                cands.append((m.start("num"), m.end("num"), _PRIORITY["SSN"], "SSN"))
                return
        elif (m := _ACCOUNT.match(text, pos)) and 6 <= sum(ch.isdigit() for ch in m["num"]) <= 20:
            cands.append((m.start("num"), m.end("num"), _PRIORITY["ACCOUNT"], "ACCOUNT"))
            return


def _resolve(cands: list[Candidate]) -> list[Candidate]:
    """Pick non-overlapping spans deterministically.

    A candidate strictly inside another one is dropped first (the URL that carries an email wins, as
    redacting it removes both); the rest are taken greedily by (priority, longest, leftmost), and a
    candidate overlapping an accepted one is dropped.
    """
    if len(cands) == 1:
        return cands
    outer = [c for c in cands
             if not any(o[0] <= c[0] and c[1] <= o[1] and o[1] - o[0] > c[1] - c[0] for o in cands)]
    outer.sort(key=lambda c: (c[2], c[0] - c[1], c[0]))
    taken: list[Candidate] = []
    for c in outer:
        if all(c[1] <= t[0] or c[0] >= t[1] for t in taken):
            taken.append(c)
    taken.sort()
    return taken


# === leak check ===================================================================================
_LEAK_REDACTORS: dict[frozenset[str], PiiRedactor] = {}


def _configured_brand_handles() -> tuple[str, ...]:
    try:
        from replyloop.settings import get_settings

        return (get_settings().brand_handle,)
    except Exception:  # settings unavailable (stand-alone use): no brand handle to keep
        return ()


def find_leaks(text: str, *, keep_handles: Iterable[str] | None = None) -> list[PiiSpan]:
    """PII still present in `text`; typed placeholders such as ``[EMAIL]`` are not leaks.

    The configured brand handle (`Settings.brand_handle`, which ingestion keeps) is not a leak either;
    pass `keep_handles` to choose the kept handles explicitly.
    """
    handles = _configured_brand_handles() if keep_handles is None else tuple(keep_handles)
    key = frozenset(h.strip().lstrip("@").lower() for h in handles if h.strip())
    redactor = _LEAK_REDACTORS.get(key)
    if redactor is None:
        redactor = _LEAK_REDACTORS.setdefault(key, PiiRedactor(keep_handles=key))
    return redactor.find(text)


# === output check: personal data in a generated reply =============================================
REPLY_KINDS: tuple[str, ...] = ("ECHO", *KINDS, "NAME")  # ECHO first: a repeated value is reported as echo
_REPLY_PRIORITY = {kind: i for i, kind in enumerate(REPLY_KINDS)}
_GREETING = re.compile(
    r"(?<![\w'’])(?:hi|hello|hey|hiya|heya|howdy|dear|greetings|good\s(?:morning|afternoon|evening)|morning|"
    r"thanks|thank\syou|cheers|welcome)\b[ \t,]*"
    r"(?:(?P<title>(?:Mr|Mrs|Ms|Mx|Miss|Dr|Prof)\.?)\s+)?"
    r"(?P<name>[^\W\d_][^\W\d_'’-]*(?:['’-][^\W\d_]+)?(?:\s[A-Z][^\W\d_]+(?:['’-][^\W\d_]+)?)?)",
    re.I,
)
# Capitalised words after a greeting that are not a person's name.
_NOT_NAMES = frozenset(
    "there here again all everyone everybody team folks friend friends guys y'all you yourself sir madam "
    "maam ma'am mate pal buddy love dear customer customers user users valued member members support "
    "again, so and for from we i our us it this that your thanks thank sorry please apologies happy great "
    "welcome good glad hope just yes no ok okay sure thats that's there's what how why when where who "
    "which can could would will shall may might let we're we've we'll i'm i've i'll you're it's "
    "monday tuesday wednesday thursday friday saturday sunday january february march april may june july "
    "august september october november december today tomorrow tonight morning afternoon evening "
    "again! everyone! a an the to in on at of by with as both back once".split())
_PLACEHOLDER = re.compile(r"\[(?:" + "|".join(k for k in PLACEHOLDERS) + r")\]")


def _brand_words() -> frozenset[str]:
    try:
        from replyloop.settings import get_settings

        s = get_settings()
        return frozenset({s.brand_name.lower(), s.brand_handle.lower()})
    except Exception:  # settings unavailable (stand-alone use)
        return frozenset()


def _greeting_names(reply: str) -> list[Candidate]:
    """Names right after a greeting ("Hi Liam", "Hello Maria,", "Dear Mr. Smith")."""
    out: list[Candidate] = []
    brands = _brand_words()
    for m in _GREETING.finditer(reply):
        name = m.group("name")
        first = name.split()[0]
        if not first[0].isupper() or first.lower() in _NOT_NAMES or first.lower() in brands:
            continue
        words = name.split()
        if len(words) > 1 and (not words[1][0].isupper() or words[1].lower() in _NOT_NAMES
                               or words[1].lower() in brands):
            words = words[:1]  # "Hi Liam Thanks" -> "Liam"
        start = m.start("title") if m.group("title") else m.start("name")
        end = m.start("name") + len(" ".join(words))
        out.append((start, end, _REPLY_PRIORITY["NAME"], "NAME"))
    return out


def _echoes(reply: str, prompts: Sequence[str]) -> list[Candidate]:
    """Values the prompt's PII detector finds, and typed placeholders of the prompt, repeated in the reply."""
    needles: set[str] = set()
    for prompt in prompts:
        needles.update(s.text for s in find_leaks(prompt) if len(s.text) >= 4)
        needles.update(m.group() for m in _PLACEHOLDER.finditer(prompt))
    out: list[Candidate] = []
    for needle in needles:
        pos = reply.find(needle)
        while pos >= 0:
            out.append((pos, pos + len(needle), _REPLY_PRIORITY["ECHO"], "ECHO"))
            pos = reply.find(needle, pos + 1)
    return out


def check_reply(reply: str, *, prompt: str | Sequence[str] | None = None) -> list[PiiSpan]:
    """Personal data in a GENERATED reply; an empty list means the reply is clean.

    Every kind `find_leaks` knows (the configured brand handle excepted), names after a greeting as
    ``NAME``, and the prompt's PII values or typed placeholders (``[EMAIL]``...) repeated in the reply as
    ``ECHO``. `prompt` is the conversation the reply answers: one text or the texts of its turns.
    """
    prompts = [prompt] if isinstance(prompt, str) else list(prompt or ())
    cands = [(s.start, s.end, _REPLY_PRIORITY[s.kind], s.kind) for s in find_leaks(reply)]
    cands += _greeting_names(reply)
    if prompts:
        cands += _echoes(reply, prompts)
    return [PiiSpan(kind, s, e, reply[s:e]) for s, e, _, kind in _resolve(cands)]


# === scoring against a labelled set ===============================================================
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
    """Precision and recall of `redactor.find` on labelled cases, overall and per kind.

    A labelled span is found (true positive) when a detection of the same kind overlaps it and covers
    >= 80 % of its characters. A detection is correct when it finds a labelled span that way; any other
    detection (overlapping nothing, of the wrong kind, or too partial) counts against precision.
    Returns {"cases", "overall", "per_kind", "misses", "false_positives"}.
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
    p, r = _ratio(n_ok, n_det), _ratio(n_found, n_lab)
    overall = {"labelled": n_lab, "found": n_found, "detected": n_det, "correct": n_ok,
               "recall": r, "precision": p, "f1": 2 * p * r / (p + r) if p + r else 0.0}
    return {"cases": len(cases), "overall": overall, "per_kind": per_kind,
            "misses": misses, "false_positives": false_positives}


class NaiveRedactor:
    """Benchmark baseline: three plain regexes (anything@anything, dashed US phone, 16 digits)."""

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
