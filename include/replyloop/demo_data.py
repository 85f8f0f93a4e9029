"""Seeded generator of a realistic landing dataset (see ARCHITECTURE.md, "Data contract").

`generate_landing` writes, per day partition, canonical conversations (one plain ``.jsonl`` and one
``.jsonl.gz`` part), a TWCS-layout CSV and feedback events through a ``write(relative_path, bytes)``
callback, so the same code can fill a local folder, an S3 prefix or an in-memory dict.
`iter_canonical_conversations` yields valid (but noisy) canonical conversations for benchmarks.

Customer text carries real-world noise: emojis, @handles, URLs, HTML entities, extra whitespace and
PII (emails, phone numbers, Luhn-valid card numbers, street addresses). The canonical files also hold a
few exact duplicates and malformed records, whose exact counts the summary reports. Everything is
driven by one ``random.Random(seed)``: the same arguments give byte-identical output.
"""
from __future__ import annotations

import csv
import datetime as dt
import functools
import gzip
import io
import json
import random
from typing import Callable, Iterator

Writer = Callable[[str, bytes], None]

# --- vocabulary -----------------------------------------------------------------------------------
NAMES = ("Sam", "Alex", "Priya", "Jordan", "Maria", "Tom", "Aisha", "Lukas", "Chen", "Emma", "Diego",
         "Fatima", "Noah", "Olivia", "Kenji", "Zoe", "Liam", "Sofia", "Omar", "Hannah")
SURNAMES = ("Kelly", "Smith", "Patel", "Nguyen", "Garcia", "Brown", "Müller", "Rossi", "Khan", "Lee")
PRODUCTS = ("AcmeBuds Pro", "SmartKettle 2", "TrailRunner shoes", "HomeHub mini", "PowerBank 20k",
            "ErgoDesk chair", "AirFryer XL", "Nova phone case", "UltraHD webcam", "FitBand 4")
CITIES = ("London", "Manchester", "Berlin", "Munich", "New York", "Chicago", "Toronto", "Dublin",
          "Austin", "Leeds")
STREETS = ("High Street", "Station Road", "Elm Avenue", "Hauptstraße", "Maple Drive", "Church Lane")
AGENTS = ("AK", "JM", "RB", "LT", "SN", "PD")
EMOJIS = ("😕", "😡", "🙏", "😂", "👍", "❤️", "🤔", "😭", "📦", "🔥")
MAIL_DOMAINS = ("gmail.com", "outlook.com", "yahoo.co.uk", "example.com", "web.de")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
TWCS_COLUMNS = ("tweet_id", "author_id", "inbound", "created_at", "text", "response_tweet_id",
                "in_response_to_tweet_id")
MALFORMED_KINDS = ("broken_json", "missing_messages", "unknown_role", "future_created_at", "empty_text")

# --- templates: per intent, opening customer turns (c), agent replies (a), follow-ups (fc, fa) ------
INTENTS: dict[str, dict[str, tuple[str, ...]]] = {
    "order_status": {
        "c": ("Hey, where is my order {order}? It was supposed to arrive {date}",
              "Any update on order {order}? Tracking hasn't moved in {days} days",
              "Ordered the {product} on {date} and still no shipping confirmation. What's going on?",
              "hi can someone tell me the status of my order {order} please"),
        "a": ("Hi {name}, thanks for reaching out! Could you DM us your order number and email so we can check the status for you? ^{sig}",
              "Hi {name}, sorry for the wait! Please send us a DM with your order details and we'll look into it right away. ^{sig}",
              "Hi {name}, we'd love to help! Can you DM us the order number so we can check where your {product} is? ^{sig}"),
        "fc": ("Just sent you a DM with the order number", "It's order {order}, placed on {date}",
               "DM sent. Please hurry, I need it before the weekend"),
        "fa": ("Thanks {name}! Your order {order} has shipped and should arrive within 2 business days. ^{sig}",
               "Thanks {name}, your {product} is on its way to {city}. You'll get a tracking update by email shortly. ^{sig}"),
    },
    "refund": {
        "c": ("I returned the {product} on {date} and still haven't got my refund of {price}",
              "How long does a refund take?? I sent back order {order} {days} days ago",
              "I want a refund for the {product}, it stopped working after a week",
              "Still waiting on my {price} refund for order {order}. Not impressed."),
        "a": ("Hi {name}, we're sorry about the wait for your refund. Please DM us your order number and we'll check on it for you. ^{sig}",
              "Hi {name}, sorry to hear that! Refunds usually take 5-7 business days once the return is received. Could you DM us your order number so we can check? ^{sig}",
              "Hi {name}, we're sorry the {product} let you down. Send us a DM with your order number and we'll get a refund started. ^{sig}"),
        "fc": ("Order {order}. I paid {price}", "Sent you the details in DM",
               "ok DM sent, the return was dropped off in {city}"),
        "fa": ("Thanks {name}! We've issued your refund of {price}; it should show on your statement within 3-5 business days. ^{sig}",
               "Thanks for the details, {name}. Your return has been processed and the refund of {price} is on its way. ^{sig}"),
    },
    "account_access": {
        "c": ("I can't log into my account, it keeps saying my password is wrong",
              "Locked out of my account again!! Password reset email never arrives",
              "Why was my account suspended? I can't see my orders",
              "hi, the 2-factor code isn't coming through & I can't sign in"),
        "a": ("Hi {name}, sorry you're having trouble signing in! Please DM us the email on your account and we'll help you get back in. ^{sig}",
              "Hi {name}, that sounds frustrating, sorry about that. Could you DM us your account email so we can take a look? ^{sig}",
              "Hi {name}, we're here to help! Please try resetting your password in the app, and if that doesn't work DM us your account email. ^{sig}"),
        "fc": ("Tried that already, still nothing", "DM sent with my email", "the reset link says it's expired"),
        "fa": ("Thanks {name}! We've sent a new reset link to your email; it's valid for 24 hours. Let us know if it works. ^{sig}",
               "Thanks {name}, we've unlocked your account. You should be able to sign in now. ^{sig}"),
    },
    "delivery_delay": {
        "c": ("My package was supposed to arrive {date} and it's still not here. Order {order}",
              "Delivery delayed AGAIN. {days} days late and no update",
              "Courier says delivered but there's nothing at my door in {city}",
              "Is there a reason deliveries to {city} are taking so long?"),
        "a": ("Hi {name}, sorry about the delay! Could you DM us your order number so we can check? ^{sig}",
              "Hi {name}, we're really sorry your order is late. Please DM us your order number and we'll chase it with the courier. ^{sig}",
              "Hi {name}, sorry to hear that! Please DM us your order number and delivery address so we can look into it. ^{sig}"),
        "fc": ("It's order {order}", "DM sent, this is the second time this happened",
               "Sent. I paid {price} for express shipping > not acceptable"),
        "fa": ("Thanks {name}, we've contacted the courier and your package should arrive in {city} by tomorrow. Sorry again for the wait! ^{sig}",
               "Thanks {name}! We've opened an investigation with the courier and will update you within 48 hours. ^{sig}"),
    },
    "complaint": {
        "c": ("Worst customer service ever. Been on hold for an hour",
              "The {product} I got is broken and nobody answers my emails",
              "Really disappointed with {brand}, the {product} arrived damaged",
              "This is the third time my order has been wrong. Sort it out."),
        "a": ("Hi {name}, we're sorry to hear about your experience. Please DM us the details so we can make this right. ^{sig}",
              "Hi {name}, that's not the experience we want for you. Could you DM us your order number so we can help? ^{sig}",
              "Hi {name}, we apologise for the trouble with your {product}. Send us a DM and we'll sort out a replacement. ^{sig}"),
        "fc": ("Order {order}, the box was crushed", "Sent. I want a replacement, not a voucher",
               "DM sent, photos attached"),
        "fa": ("Thanks {name}, we've arranged a replacement {product} at no cost. It should ship within 2 business days. ^{sig}",
               "Thanks {name}, we're sorry again. We've escalated this to our team and you'll hear back within 24 hours. ^{sig}"),
    },
    "praise": {
        "c": ("Just got my {product} and I love it! Thanks {brand}",
              "Shout out to your support team, sorted my issue in minutes",
              "Fastest delivery ever, ordered yesterday & it's here already",
              "The new {product} is amazing <3"),
        "a": ("Hi {name}, thank you so much for the kind words! Enjoy your {product}! ^{sig}",
              "Hi {name}, that's great to hear! We'll pass your thanks on to the team. ^{sig}",
              "Hi {name}, thanks for sharing! We're happy you're enjoying it. ^{sig}"),
        "fc": ("Will definitely order again", "Keep it up!"),
        "fa": ("Thanks {name}, we can't wait to see you again! ^{sig}",
               "Thank you, {name}! Have a great day. ^{sig}"),
    },
    "product_question": {
        "c": ("Does the {product} come in other colours?", "Is the {product} compatible with older models?",
              "Quick question: what's the warranty on the {product}?",
              "Will the {product} be back in stock soon? It's been sold out for weeks"),
        "a": ("Hi {name}, great question! The {product} comes with a 2-year warranty and works with all current models. ^{sig}",
              "Hi {name}, thanks for asking! You can find all the details for the {product} on our website, or DM us and we'll help. ^{sig}",
              "Hi {name}, the {product} should be back in stock within 2 weeks. We'll let you know! ^{sig}"),
        "fc": ("And does it ship to {city}?", "What about the price, is it still {price}?"),
        "fa": ("Hi {name}, yes, we ship to {city} and delivery usually takes 2-4 business days. ^{sig}",
               "Hi {name}, the {product} is currently {price}. Let us know if you have any other questions! ^{sig}"),
    },
}
INTENT_NAMES = tuple(INTENTS)
CLOSE_C = ("Thanks!", "Great, thank you", "ok thanks", "Perfect, appreciate it")
CLOSE_A = ("You're welcome, {name}! Have a great day. ^{sig}",
           "Happy to help, {name}! Let us know if there's anything else. ^{sig}")
NUDGE_C = ("hello??", "anyone there?", "@{brand} still waiting...")


# --- slots and PII --------------------------------------------------------------------------------
def _pick(rng: random.Random, seq):
    """rng.choice without its per-call overhead (this module draws a lot of them)."""
    return seq[int(rng.random() * len(seq))]


def _ri(rng: random.Random, a: int, b: int) -> int:
    """Integer in [a, b], like rng.randint but cheaper."""
    return a + int(rng.random() * (b - a + 1))


def _slots(rng: random.Random, day: dt.date, brand: str) -> dict[str, str]:
    name = _pick(rng, NAMES)
    order = f"#A{_ri(rng, 10000, 99999)}" if rng.random() < 0.5 else str(_ri(rng, 100000, 999999))
    past = day - dt.timedelta(days=_ri(rng, 1, 20))
    return {"name": name, "surname": _pick(rng, SURNAMES), "brand": brand, "sig": _pick(rng, AGENTS),
            "handle": f"{name.lower()}_{_pick(rng, 'abcdefghjkmnprstw')}{_ri(rng, 10, 99)}",
            "user_id": f"u-{_ri(rng, 1000, 999999)}", "order": order,
            "price": f"${_ri(rng, 9, 299)}.{_pick(rng, ('99', '49', '00', '95'))}",
            "date": f"{MONTHS[past.month - 1]} {past.day}", "days": str(_ri(rng, 3, 14)),
            "product": _pick(rng, PRODUCTS), "city": _pick(rng, CITIES)}


def luhn_card(rng: random.Random) -> str:
    """A 16-digit Visa-like number that passes the Luhn check."""
    digits = [4] + [_ri(rng, 0, 9) for _ in range(14)]
    total = 0
    for i, d in enumerate(reversed(digits)):  # the check digit will sit right of these
        d = d * 2 if i % 2 == 0 else d
        total += d - 9 if d > 9 else d
    return "".join(map(str, digits + [(10 - total % 10) % 10]))


def _phone(rng: random.Random) -> str:
    n = functools.partial(_ri, rng)
    return _pick(rng, (f"({n(201, 989)}) {n(200, 999)}-{n(1000, 9999)}", f"{n(201, 989)}-{n(200, 999)}-{n(1000, 9999)}",
                       f"+1 {n(201, 989)}.{n(200, 999)}.{n(1000, 9999)}", f"+44 20 {n(7000, 8999)} {n(1000, 9999)}",
                       f"+44 7{n(100, 999)} {n(100000, 999999)}", f"+49 30 {n(10000000, 99999999)}"))


def _pii(rng: random.Random, s: dict[str, str]) -> str:
    kind = rng.randrange(4)
    if kind == 0:
        email = f"{s['name'].lower()}.{s['surname'].lower()}{_ri(rng, 1, 99)}@{_pick(rng, MAIL_DOMAINS)}"
        return _pick(rng, ("my email is {}", "account email: {}", "reach me at {}")).format(email)
    if kind == 1:
        return _pick(rng, ("call me on {}", "my number is {}", "phone: {}")).format(_phone(rng))
    if kind == 2:
        card = luhn_card(rng)
        card = _pick(rng, (card, " ".join(card[i:i + 4] for i in range(0, 16, 4)), "-".join(card[i:i + 4] for i in range(0, 16, 4))))
        return _pick(rng, ("I paid with card {}", "card no {} was charged twice")).format(card)
    address = "221B Baker Street, London NW1 6XE" if rng.random() < 0.3 else \
        f"{_ri(rng, 1, 240)} {_pick(rng, STREETS)}, {s['city']}"
    return _pick(rng, ("ship to {}", "my address is {}")).format(address)


# --- noise ----------------------------------------------------------------------------------------
def _html_entities(text: str) -> str:
    return text.replace("&", "&amp;").replace(">", "&gt;").replace("<", "&lt;").replace("'", "&#39;")


def _whitespace(rng: random.Random, text: str) -> str:
    return _pick(rng, (f"  {text}", f"{text}   ", text.replace(" ", "  ", 2), text.replace(". ", ".\n", 1) + " \n"))


def _noisy_customer(rng: random.Random, text: str, s: dict[str, str], channel: str) -> str:
    r = rng.random
    if r() < 0.15:
        text = f"{text}. {_pii(rng, s)}" if r() < 0.5 else f"{_pii(rng, s)} - {text}"
    if r() < 0.06:
        text += f" cc @{_pick(rng, NAMES).lower()}_{_ri(rng, 1, 999)}"
    if r() < 0.08:
        text += _pick(rng, (" https://t.co/{}", " pic.twitter.com/{}")).format(f"{rng.getrandbits(40):010x}")
    if r() < 0.25:
        text += " " + _pick(rng, EMOJIS) * _ri(rng, 1, 3)
    if r() < 0.15:
        text = _html_entities(text)
    if r() < 0.08:
        text = _whitespace(rng, text)
    if channel == "public_reply" and r() < 0.5:
        text = f"@{s['brand']} {text}"
    return text


def _noisy_agent(rng: random.Random, text: str, s: dict[str, str], channel: str) -> str:
    r = rng.random
    if r() < 0.05:
        text = text.replace(" ^", f" https://help.{s['brand'].lower()}.example/contact ^", 1)
    if r() < 0.08:
        text = text.replace("! ", f"! {_pick(rng, ('🙂', '💙', '👋'))} ", 1)
    if r() < 0.1:
        text = _html_entities(text)
    if channel == "public_reply" and r() < 0.6:
        text = f"@{s['handle']} {text}"
    return text


# --- conversations --------------------------------------------------------------------------------
def _script(rng: random.Random, intent: str) -> list[tuple[str, tuple[str, ...]]]:
    """(role, template pool) turns: 1-3 customer/agent pairs, customer first, an occasional double post."""
    t = INTENTS[intent]
    turns = [("customer", t["c"])]
    if rng.random() < 0.06:
        turns.append(("customer", NUDGE_C))
    turns.append(("agent", t["a"]))
    r = rng.random()
    if r >= 0.5:
        turns += [("customer", t["fc"]), ("agent", t["fa"])]
    if r >= 0.8:
        turns += [("customer", CLOSE_C), ("agent", CLOSE_A)]
    return turns


def _iso(day: dt.date, seconds: int) -> str:
    return f"{day.isoformat()}T{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}Z"


def _build_conversation(rng: random.Random, day: dt.date, conv_id: str, brand: str,
                        channel: str | None = None, noisy: bool = True) -> tuple[dict, dict]:
    """One canonical conversation plus its context (slots, template pools and times in seconds)."""
    intent = _pick(rng, INTENT_NAMES)
    s = _slots(rng, day, brand)
    channel = channel or ("direct_message" if rng.random() < 0.3 else "public_reply")
    t = rng.randrange(0, 86400 - 3600)  # 7 messages x <= 7 minutes always fits in the day
    messages, times, pools = [], [], []
    for k, (role, pool) in enumerate(_script(rng, intent), 1):
        text = _pick(rng, pool).format_map(s)
        if noisy:
            text = (_noisy_customer if role == "customer" else _noisy_agent)(rng, text, s, channel)
        messages.append({"message_id": f"m-{conv_id[2:]}-{k}", "role": role,
                         "author_id": s["user_id"] if role == "customer" else brand,
                         "text": text, "created_at": _iso(day, t)})
        times.append(t)
        pools.append(pool)
        t += _ri(rng, 20, 420)
    record = {"conversation_id": conv_id, "platform": "twitter", "channel": channel,
              "created_at": messages[0]["created_at"]}
    if rng.random() < 0.9:
        record["language"] = "en"
    record["messages"] = messages
    return record, {"slots": s, "times": times, "pools": pools}


def iter_canonical_conversations(n: int, *, seed: int = 7, day: dt.date | None = None,
                                 brand: str = "AcmeSupport") -> Iterator[dict]:
    """Yield n clean-ish canonical conversation dicts (for benchmarks); deterministic for a seed."""
    rng = random.Random(seed)
    day = day or dt.date(2026, 11, 20)
    stamp = f"{day:%Y%m%d}"
    for i in range(n):
        yield _build_conversation(rng, day, f"c-{stamp}-{i:05d}", brand)[0]


# --- malformed records and duplicates -------------------------------------------------------------
def _malform(rng: random.Random, record: dict, kind: str) -> str:
    """Return the JSONL line of `record` damaged in the way named by `kind`."""
    if kind == "broken_json":
        line = json.dumps(record, ensure_ascii=False)
        return line[: _ri(rng, 20, len(line) // 2)]
    if kind == "missing_messages":
        del record["messages"]
    elif kind == "unknown_role":
        _pick(rng, record["messages"])["role"] = "bot"
    elif kind == "future_created_at":
        record["created_at"] = ("2099" + record["created_at"][4:]).replace("-02-29T", "-02-28T")
    else:  # empty_text
        _pick(rng, record["messages"])["text"] = ""
    return json.dumps(record, ensure_ascii=False)


def _duplicate(record: dict, new_id: str | None) -> dict:
    """Same content; optionally under a new conversation id (message ids follow it)."""
    copy = json.loads(json.dumps(record))
    if new_id:
        copy["conversation_id"] = new_id
        for k, m in enumerate(copy["messages"], 1):
            m["message_id"] = f"m-{new_id[2:]}-{k}"
    return copy


# --- TWCS export ----------------------------------------------------------------------------------
def _twcs_time(day: dt.date, seconds: int) -> str:
    return (f"{WEEKDAYS[day.weekday()]} {MONTHS[day.month - 1]} {day.day:02d} "
            f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d} +0000 {day.year}")


def _twcs_rows(rng: random.Random, day: dt.date, brand: str, threads: int, next_id: list[int],
               orphan: bool) -> list[dict]:
    """Rows of `threads` public threads linked by reply ids; one extra reply to a missing tweet if asked."""
    rows: list[dict] = []
    for i in range(threads):
        record, ctx = _build_conversation(rng, day, "c-twcs", brand, "public_reply", noisy=False)
        customer = str(_ri(rng, 100000, 899999))
        thread = []
        for m, t in zip(record["messages"], ctx["times"]):
            inbound = m["role"] == "customer"
            text = _noisy_customer(rng, m["text"], ctx["slots"], "direct_message") if inbound else m["text"]
            thread.append({"tweet_id": str(next_id[0]), "author_id": customer if inbound else brand,
                           "inbound": "True" if inbound else "False", "created_at": _twcs_time(day, t),
                           "text": f"@{brand if inbound else customer} {text}", "response_tweet_id": "",
                           "in_response_to_tweet_id": ""})
            next_id[0] += _ri(rng, 1, 3)
        for prev, cur in zip(thread, thread[1:]):
            prev["response_tweet_id"], cur["in_response_to_tweet_id"] = cur["tweet_id"], prev["tweet_id"]
        if i % 10 == 0:  # a second agent answer to the first tweet: comma-separated response ids
            first = thread[0]
            extra = {"tweet_id": str(next_id[0]), "author_id": brand, "inbound": "False",
                     "created_at": _twcs_time(day, ctx["times"][0] + 15), "response_tweet_id": "",
                     "text": f"@{customer} We've sent you a DM, {ctx['slots']['name']}! ^{ctx['slots']['sig']}",
                     "in_response_to_tweet_id": first["tweet_id"]}
            first["response_tweet_id"] += "," + extra["tweet_id"]
            thread.append(extra)
            next_id[0] += 1
        rows += thread
    if orphan:
        missing = next_id[0]  # skipped: no row ever carries this id
        rows.append({"tweet_id": str(missing + 1), "author_id": brand, "inbound": "False",
                     "created_at": _twcs_time(day, 43200), "response_tweet_id": "",
                     "text": "@412987 Hi there, sorry for the trouble! Please DM us so we can help. ^AK",
                     "in_response_to_tweet_id": str(missing)})
        next_id[0] += 2
    rng.shuffle(rows)
    return rows


def _csv_bytes(rows: list[dict]) -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=TWCS_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")


# --- feedback -------------------------------------------------------------------------------------
FEEDBACK_PATTERN = ("up", "down", "correction", "up", "correction", "up", "down")


def _feedback(rng: random.Random, day: dt.date, pool: list[tuple[dict, dict]], n: int) -> list[dict]:
    events = []
    offset = rng.randrange(len(FEEDBACK_PATTERN))
    for i, (record, ctx) in enumerate(rng.sample(pool, min(n, len(pool)))):
        k = _pick(rng, [j for j, m in enumerate(record["messages"]) if m["role"] == "agent"])
        kind = FEEDBACK_PATTERN[(offset + i) % len(FEEDBACK_PATTERN)]
        correction = None
        if kind == "correction":
            pool = [t.format_map(ctx["slots"]) for t in ctx["pools"][k]]  # a better reply of the same kind
            correction = _pick(rng, [t for t in pool if t not in record["messages"][k]["text"]] or pool)
        events.append({"event_id": f"f-{day:%Y%m%d}-{i:04d}", "conversation_id": record["conversation_id"],
                       "message_id": record["messages"][k]["message_id"], "rating": "up" if kind == "up" else "down",
                       "correction": correction, "model_version": _pick(rng, ("5", "6", "7", None)),
                       "created_at": _iso(day, min(86399, ctx["times"][k] + _ri(rng, 30, 7200)))})
    return events


# --- landing --------------------------------------------------------------------------------------
def _jsonl(lines: list[str]) -> bytes:
    return "".join(line + "\n" for line in lines).encode("utf-8")


def generate_landing(write: Writer, *, start_date: dt.date, days: int = 2, conversations_per_day: int = 120,
                     seed: int = 7, brand: str = "AcmeSupport") -> dict:
    """Write a landing dataset through `write(relative_path, data_bytes)`; return a summary dict.

    `conversations` counts canonical lines (records) written, malformed and duplicate ones included;
    `messages` counts message objects in the parseable records that have messages.
    """
    rng = random.Random(seed)
    summary = {"files": [], "conversations": 0, "twcs_threads": 0, "twcs_rows": 0, "feedback_events": 0,
               "malformed": 0, "duplicates": 0, "messages": 0}
    next_tweet_id, malformed_counter = [100000 + rng.randrange(1000)], 0

    def emit(path: str, data: bytes) -> None:
        write(path, data)
        summary["files"].append(path)

    for d in range(days):
        day = start_date + dt.timedelta(days=d)
        n, stamp, part = conversations_per_day, f"{day:%Y%m%d}", f"dt={day.isoformat()}"
        built = [_build_conversation(rng, day, f"c-{stamp}-{i:05d}", brand) for i in range(n)]
        n_bad = min(n, max(1, round(0.04 * n)))
        bad = set(rng.sample(range(n), n_bad))
        clean = [b for i, b in enumerate(built) if i not in bad]
        lines = [json.dumps(r, ensure_ascii=False) for r, _ in clean]
        summary["messages"] += sum(len(r["messages"]) for r, _ in clean)
        dups = rng.sample(clean, min(len(clean), max(1, round(0.04 * n))))
        for j, (record, _) in enumerate(dups):
            copy = _duplicate(record, f"c-{stamp}-{n + j:05d}" if rng.random() < 0.5 else None)
            lines.append(json.dumps(copy, ensure_ascii=False))
            summary["messages"] += len(copy["messages"])
        for i in sorted(bad):
            kind = MALFORMED_KINDS[malformed_counter % len(MALFORMED_KINDS)]
            malformed_counter += 1
            record = built[i][0]
            lines.append(_malform(rng, record, kind))
            summary["messages"] += len(record.get("messages", [])) if kind != "broken_json" else 0
        rng.shuffle(lines)
        half = len(lines) // 2
        emit(f"raw/conversations/{part}/part-0000.jsonl", _jsonl(lines[:half]))
        emit(f"raw/conversations/{part}/part-0001.jsonl.gz", gzip.compress(_jsonl(lines[half:]), mtime=0))
        summary["conversations"] += len(lines)
        summary["malformed"] += n_bad
        summary["duplicates"] += len(dups)

        threads = max(2, n // 4)
        rows = _twcs_rows(rng, day, brand, threads, next_tweet_id, orphan=d == 0)
        emit(f"raw/twcs/{part}/twcs-0000.csv", _csv_bytes(rows))
        summary["twcs_threads"] += threads
        summary["twcs_rows"] += len(rows)

        events = _feedback(rng, day, clean, max(3, n // 5))
        emit(f"raw/feedback/{part}/feedback-0000.jsonl", _jsonl([json.dumps(e, ensure_ascii=False) for e in events]))
        summary["feedback_events"] += len(events)
    return summary
