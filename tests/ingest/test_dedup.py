from __future__ import annotations

from replyloop.ingest.dedup import ContaminationGuard, Deduplicator, content_hash


def conv(*texts):
    roles = ["customer", "agent"] * len(texts)
    return {"messages": [{"role": r, "text": t} for r, t in zip(roles, texts)]}


def test_exact_duplicates_ignore_ids_case_and_timestamps():
    a = conv("Where is my parcel to Leeds?", "Sorry! Please DM us your order number.")
    b = {**conv("where is my parcel to leeds?", "SORRY! Please DM us your order number."), "conversation_id": "other"}
    assert content_hash(a) == content_hash(b)
    d = Deduplicator()
    assert d.check(a, content_hash(a)) is None
    assert d.check(b, content_hash(b)) == "exact"


def test_near_duplicates_are_caught_and_different_ones_kept():
    d = Deduplicator(threshold=0.8)
    base = ("My order of the blue running shoes size 42 has not arrived and the tracking page has not "
            "changed since Monday, can you tell me what is going on with it please",
            "Sorry about the delay with your running shoes! Please DM us your order number and we will check "
            "with the carrier straight away")
    near = (base[0] + " thanks", base[1])
    other = ("I love the new kettle, it boils so fast and looks great in my kitchen, thank you so much",
             "That is great to hear, thanks for sharing! Enjoy your new kettle")
    assert d.check(conv(*base), "h1") is None
    assert d.check(conv(*near), "h2") == "near"
    assert d.check(conv(*other), "h3") is None


def test_contamination_guard_exact_and_near():
    guard = ContaminationGuard(["Is the smartwatch waterproof? I want to wear it swimming."])
    assert guard.hit(conv("is the smartwatch waterproof?? i want to wear it swimming", "Yes!"))
    assert guard.hit(conv("Hi! Is the smartwatch waterproof? I want to wear it swimming.", "Yes!"))
    assert guard.hit(conv("Where is my parcel?", "Is the smartwatch waterproof? I want to wear it swimming.")) is None
    assert guard.hit(conv("Does the smartwatch have GPS?", "Yes")) is None
