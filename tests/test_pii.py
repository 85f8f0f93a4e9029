"""PII redaction: quality on the labelled set, per-kind behaviour, leak check, idempotence, scoring."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from replyloop.pii import (
    KINDS,
    PLACEHOLDERS,
    NaiveRedactor,
    PiiRedactor,
    PiiSpan,
    check_reply,
    find_leaks,
    iban_ok,
    luhn_ok,
    score,
)

CASES_FILE = Path(__file__).resolve().parent / "data" / "pii_cases.jsonl"
BRAND = "AcmeSupport"


@pytest.fixture(scope="module")
def cases() -> list[dict]:
    with CASES_FILE.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


@pytest.fixture(scope="module")
def redactor() -> PiiRedactor:
    return PiiRedactor(keep_handles=[BRAND])


def kinds_of(redactor: PiiRedactor, text: str) -> list[tuple[str, str]]:
    return [(s.kind, s.text) for s in redactor.find(text)]


# --- the labelled set -----------------------------------------------------------------------------
def test_labelled_set_is_large_and_varied(cases):
    assert len(cases) >= 300
    assert len({c["id"] for c in cases}) == len(cases)
    assert sum(c["hard"] for c in cases) >= 0.4 * len(cases)
    assert sum(not c["spans"] for c in cases) >= 90
    labelled_kinds = {s["kind"] for c in cases for s in c["spans"]}
    assert labelled_kinds <= set(PLACEHOLDERS)
    assert {"EMAIL", "PHONE", "CARD", "URL", "HANDLE", "ADDRESS", "ACCOUNT", "IBAN", "IP"} <= labelled_kinds
    for c in cases:
        for span in c["spans"]:
            assert span["text"] in c["text"], c["id"]


def test_labelled_set_quality(cases, redactor):
    result = score(redactor, cases)
    overall = result["overall"]
    assert overall["labelled"] >= 250
    assert overall["recall"] >= 0.98, result["misses"]
    assert overall["precision"] >= 0.95, result["false_positives"]
    for kind, row in result["per_kind"].items():
        assert row["recall"] >= 0.9, (kind, row)


def test_naive_baseline_is_clearly_worse(cases, redactor):
    ours = score(redactor, cases)["overall"]
    naive = score(NaiveRedactor(), cases)["overall"]
    assert naive["recall"] < 0.5 < ours["recall"]
    assert naive["f1"] < ours["f1"]


def test_redaction_is_idempotent_and_leaves_no_leaks(cases, redactor):
    for c in cases:
        once, counts = redactor.redact(c["text"])
        twice, again = redactor.redact(once)
        assert twice == once, c["id"]
        assert not again, c["id"]
        assert find_leaks(once, keep_handles=[BRAND]) == [], c["id"]
        assert sum(counts.values()) == len(redactor.find(c["text"]))


def test_spans_are_sorted_non_overlapping_and_exact(cases, redactor):
    for c in cases:
        spans = redactor.find(c["text"])
        for a, b in zip(spans, spans[1:]):
            assert a.end <= b.start, c["id"]
        for s in spans:
            assert s.kind in KINDS
            assert c["text"][s.start:s.end] == s.text


# --- cards, IBANs, accounts -----------------------------------------------------------------------
@pytest.mark.parametrize("card", ["4111 1111 1111 1111", "4111-1111-1111-1111", "4111111111111111",
                                  "5555 5555 5555 4444", "3782 822463 10005", "6011 1111 1111 1117"])
def test_luhn_valid_cards_are_redacted(redactor, card):
    text, counts = redactor.redact(f"@{BRAND} you charged {card} twice")
    assert text == f"@{BRAND} you charged [CARD] twice"
    assert counts == Counter({"CARD": 1})


@pytest.mark.parametrize("number", ["4111 1111 1111 1112", "4111-1111-1111-1112", "1234567812345678"])
def test_non_luhn_numbers_are_not_cards(redactor, number):
    assert luhn_ok(number.replace(" ", "").replace("-", "")) is False
    assert redactor.find(f"gift code {number} does not work") == []


def test_non_luhn_sixteen_digits_can_be_an_account_by_context(redactor):
    found = kinds_of(redactor, "account number 1234 5678 9012 3456 is wrong")
    assert found == [("ACCOUNT", "1234 5678 9012 3456")]


def test_card_is_kept_apart_from_an_expiry_and_a_stray_digit(redactor):
    assert kinds_of(redactor, "card 4111 1111 1111 1111 exp 09/27") == [("CARD", "4111 1111 1111 1111")]
    assert kinds_of(redactor, "charged 4111 1111 1111 1111 2 times") == [("CARD", "4111 1111 1111 1111")]


def test_luhn_valid_number_after_an_order_label_is_not_a_card(redactor):
    assert redactor.find("order no. 4111111111111111 is that a glitch?") == []


@pytest.mark.parametrize("iban", ["DE89 3704 0044 0532 0130 00", "DE89370400440532013000",
                                  "GB82 WEST 1234 5698 7654 32", "NL91ABNA0417164300", "BE68-5390-0754-7034"])
def test_valid_ibans_are_redacted(redactor, iban):
    assert iban_ok(iban.replace(" ", "").replace("-", "").upper())
    assert redactor.redact(f"refund to {iban} please")[0] == "refund to [IBAN] please"


@pytest.mark.parametrize("iban", ["DE89 3704 0044 0532 0130 01", "GB00 WEST 1234 5698 7654 32",
                                  "DE89 3704 0044"])
def test_ibans_failing_the_checksum_or_length_are_kept(redactor, iban):
    assert not iban_ok(iban.replace(" ", ""))
    assert redactor.find(f"is {iban} right?") == []


@pytest.mark.parametrize("text, number", [
    ("account number 12345678 shows the wrong plan", "12345678"),
    ("acct# 00981234 still no refund", "00981234"),
    ("a/c no. 55501234 double billed", "55501234"),
    ("member id: 88812345 points missing", "88812345"),
    ("customer number 00123456", "00123456"),
])
def test_account_numbers_after_keywords(redactor, text, number):
    assert kinds_of(redactor, text) == [("ACCOUNT", number)]
    assert "[ACCOUNT]" in redactor.redact(text)[0]


# --- phones ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("phone", [
    "+1 (415) 555-0132", "415-555-0132", "(415) 555-0132", "415.555.0132", "+44 20 7946 0958",
    "+49 30 123456789", "07700 900123", "0033 1 23 45 67 89", "+91 98765 43210", "+44 (0)20 7946 0958",
    "(+44) 20 7946 0958", "1-800-555-0199", "030/12345678", "+33 6 12 34 56 78", "+81 3-1234-5678",
])
def test_phone_formats(redactor, phone):
    assert kinds_of(redactor, f"call me on {phone} after 5") == [("PHONE", phone)]


def test_international_phone_does_not_swallow_a_following_number(redactor):
    assert kinds_of(redactor, "+44 20 7946 0958 2025") == [("PHONE", "+44 20 7946 0958")]


# --- look-alikes ----------------------------------------------------------------------------------
@pytest.mark.parametrize("text", [
    "order #A12345 hasn't shipped", "order 784512 arrived broken", "order #1234567890 - where is it?",
    "my order number is 4155550132", "it was $49.99 yesterday", "paid €1,299.00 for it", "49.99 USD shipping",
    "due 2026-11-20, now 2026-11-27", "waited from 10:45 to 13:30", "expected 12/25/2026", "15% off",
    "ordered 2 items, got 3 days late", "iPhone 15 won't pair", "XPS 13 9310 fan is loud", "RTX 4090 again?",
    "#BlackFriday deal missing", "@_@ confusing", "let's talk @10am", "email me at john@ lol",
    "bought on acme.com", "firmware 2.4.1.10 bricked it", "card ending in 4242",
    "tracking 1Z999AA10123456784", "3 days on the road",
    "MacBook Air M2 8GB", "Lieferung am 01.02.2026 14:30",
])
def test_look_alikes_are_untouched(redactor, text):
    assert redactor.redact(text) == (text, Counter())


# --- handles --------------------------------------------------------------------------------------
@pytest.mark.parametrize("keep", [["AcmeSupport"], ["@AcmeSupport"], ["acmesupport"], [" @ACMESUPPORT "]])
def test_brand_handle_is_kept_case_insensitively(keep):
    r = PiiRedactor(keep_handles=keep)
    text, counts = r.redact("@AcmeSupport @acmesupport thanks! cc @jane_doe88.")
    assert text == "@AcmeSupport @acmesupport thanks! cc [HANDLE]."
    assert counts == Counter({"HANDLE": 1})


def test_without_keep_handles_the_brand_is_a_handle_too():
    assert PiiRedactor().redact("@AcmeSupport hi")[0] == "[HANDLE] hi"


def test_handles_next_to_punctuation(redactor):
    assert redactor.redact(".@mike_r same (@jdoe88) and @amy_b!! 👉@emma_j👈")[0] == \
        ".[HANDLE] same ([HANDLE]) and [HANDLE]!! 👉[HANDLE]👈"


# --- emails, URLs, addresses, IPs -----------------------------------------------------------------
def test_emails_win_over_handles_and_urls(redactor):
    assert kinds_of(redactor, "mail jane.doe+acme@mail.example.co.uk now") == \
        [("EMAIL", "jane.doe+acme@mail.example.co.uk")]
    assert kinds_of(redactor, "&lt;ana.silva@proton.me&gt;") == [("EMAIL", "ana.silva@proton.me")]


def test_url_carrying_an_email_is_one_url(redactor):
    text = "see https://acme.example/r?email=jane@doe.com ok"
    assert redactor.redact(text)[0] == "see [URL] ok"


@pytest.mark.parametrize("url", ["https://t.co/AbC123xyz", "bit.ly/xyz123", "t.co/abc9F2",
                                 "www.example.com/orders?id=5", "pic.twitter.com/aBcD1234",
                                 "www.janesbakery.com"])
def test_urls(redactor, url):
    assert redactor.redact(f"look ({url}).")[0] == "look ([URL])."


@pytest.mark.parametrize("address", [
    "221B Baker Street", "1600 Pennsylvania Ave NW, Washington, DC 20500", "Apt 4B, 55 Elm Street",
    "742 Evergreen Terrace, Springfield, IL 62704", "350 5th Ave, Suite 200, New York, NY 10118",
    "12 High Street, London SW1A 1AA", "Hauptstraße 5, 10115 Berlin", "12 rue de Rivoli, 75001 Paris",
    "PO Box 1234", "SW1A 1AA",
])
def test_addresses(redactor, address):
    assert kinds_of(redactor, f"ship to {address} please") == [("ADDRESS", address)]


def test_ipv4(redactor):
    assert kinds_of(redactor, "blocked from 203.0.113.7 again") == [("IP", "203.0.113.7")]
    assert redactor.find("blocked from 203.0.113.700 again") == []


# --- placeholders, counts, leaks ------------------------------------------------------------------
def test_typed_placeholders_and_counts(redactor):
    text = ("@AcmeSupport @jane_d email jane@x.com, call +44 20 7946 0958, card 4111 1111 1111 1111, "
            "IBAN DE89 3704 0044 0532 0130 00, acct 12345678, ship to 221B Baker Street, pics t.co/ab12, "
            "ip 10.0.0.7")
    out, counts = redactor.redact(text)
    assert out == ("@AcmeSupport [HANDLE] email [EMAIL], call [PHONE], card [CARD], IBAN [IBAN], "
                   "acct [ACCOUNT], ship to [ADDRESS], pics [URL], ip [IP]")
    kinds = ("HANDLE", "EMAIL", "PHONE", "CARD", "IBAN", "ACCOUNT", "ADDRESS", "URL", "IP")
    assert counts == Counter({k: 1 for k in kinds})


def test_find_leaks(redactor):
    raw = "call me on 415-555-0132 or mail jane@x.com"
    assert [s.kind for s in find_leaks(raw)] == ["PHONE", "EMAIL"]
    redacted = redactor.redact(raw)[0]
    assert find_leaks(redacted) == []
    assert find_leaks("[EMAIL] [PHONE] [CARD] [URL] [HANDLE] [ADDRESS] [ACCOUNT] [IBAN] [IP] [SSN]") == []


def test_find_leaks_keeps_the_configured_brand_handle():
    assert find_leaks("@AcmeSupport thanks") == []  # Settings.brand_handle
    assert [s.kind for s in find_leaks("@AcmeSupport thanks", keep_handles=[])] == ["HANDLE"]
    assert [s.kind for s in find_leaks("@someone_else thanks")] == ["HANDLE"]


def test_empty_and_clean_text(redactor):
    assert redactor.find("") == []
    assert redactor.redact("") == ("", Counter())
    clean = "my kettle arrived damaged, what now?"
    assert redactor.redact(clean) == (clean, Counter())


# --- scoring --------------------------------------------------------------------------------------
class _Fixed:
    """A fake redactor returning canned detections."""

    def __init__(self, spans: dict[str, list[tuple[str, str]]]):
        self.spans = spans

    def find(self, text: str) -> list[PiiSpan]:
        out = []
        for kind, value in self.spans.get(text, []):
            start = text.index(value)
            out.append(PiiSpan(kind, start, start + len(value), value))
        return out


def test_score_counts_overlap_kind_and_coverage():
    cases = [
        {"id": "a", "text": "mail jane@x.com now", "spans": [{"kind": "EMAIL", "text": "jane@x.com"}]},
        {"id": "b", "text": "call 415-555-0132 ok", "spans": [{"kind": "PHONE", "text": "415-555-0132"}]},
        {"id": "c", "text": "ship to 12 Elm Street", "spans": [{"kind": "ADDRESS", "text": "12 Elm Street"}]},
        {"id": "d", "text": "order 784512", "spans": []},
    ]
    fake = _Fixed({
        "mail jane@x.com now": [("EMAIL", "jane@x.com")],           # exact: TP
        "call 415-555-0132 ok": [("CARD", "415-555-0132")],         # wrong kind: miss + wrong detection
        "ship to 12 Elm Street": [("ADDRESS", "12 Elm")],           # 6/13 < 80 %: miss + wrong detection
        "order 784512": [("PHONE", "784512")],                      # overlaps nothing: FP
    })
    result = score(fake, cases)
    assert result["overall"]["labelled"] == 3
    assert result["overall"]["found"] == 1
    assert result["overall"]["detected"] == 4
    assert result["overall"]["correct"] == 1
    assert result["overall"]["recall"] == pytest.approx(1 / 3)
    assert result["overall"]["precision"] == pytest.approx(1 / 4)
    assert result["per_kind"]["EMAIL"]["recall"] == 1.0
    assert result["per_kind"]["PHONE"]["recall"] == 0.0
    assert result["per_kind"]["CARD"]["precision"] == 0.0
    assert {m["id"] for m in result["misses"]} == {"b", "c"}
    assert {f["id"] for f in result["false_positives"]} == {"b", "c", "d"}


def test_score_accepts_a_longer_detection_covering_the_label():
    cases = [{"id": "a", "text": "to 12 Elm Street, Leeds",
              "spans": [{"kind": "ADDRESS", "text": "12 Elm Street"}]}]
    result = score(_Fixed({"to 12 Elm Street, Leeds": [("ADDRESS", "12 Elm Street, Leeds")]}), cases)
    assert result["overall"]["recall"] == 1.0 and result["overall"]["precision"] == 1.0


# --- output check of generated replies ------------------------------------------------------------
@pytest.mark.parametrize("reply, name", [
    ("Hi Liam, sorry about the wait!", "Liam"), ("Hello Maria, thanks for reaching out.", "Maria"),
    ("Dear Mr. Smith, we have refunded you.", "Mr. Smith"), ("Hey Jordan! DM us please.", "Jordan"),
])
def test_check_reply_flags_names_after_a_greeting(reply, name):
    assert [(s.kind, s.text) for s in check_reply(reply)] == [("NAME", name)]


@pytest.mark.parametrize("reply", [
    "Hi there, sorry about the wait!", "Hi team, thanks!", "Hello again, please DM us.",
    "Hi Acme fans, big news.", "Happy Monday! DM us your order number.", "Thanks for reaching out!",
    "Hi, could you DM us the order number?",
])
def test_check_reply_keeps_clean_replies(reply):
    assert check_reply(reply) == []


def test_check_reply_flags_invented_contact_data():
    reply = "Hi there, mail jane.doe@gmail.com or call 415-555-0132."
    assert [s.kind for s in check_reply(reply)] == ["EMAIL", "PHONE"]


def test_check_reply_flags_prompt_values_and_placeholders_echoed_back():
    prompt = ["my email is ana.silva@proton.me", "order to [ADDRESS] never came"]
    reply = "We wrote to ana.silva@proton.me and will check [ADDRESS]."
    assert [(s.kind, s.text) for s in check_reply(reply, prompt=prompt)] == \
        [("ECHO", "ana.silva@proton.me"), ("ECHO", "[ADDRESS]")]
    assert check_reply("Please DM us your [EMAIL].", prompt="where is my order?") == []
