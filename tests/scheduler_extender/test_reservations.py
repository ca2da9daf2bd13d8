"""The reservation book: hold, replace, exclude the pod's own claim, release on sight or timeout."""

from __future__ import annotations

from wattwise.scheduler_extender.reservations import BudgetClaim, ReservationBook


def test_claims_add_up_per_budget() -> None:
    book = ReservationBook(ttl_s=60)
    book.hold("ns/a", ["n1"], {"rack": BudgetClaim(100, 200)}, now=0)
    book.hold("ns/b", ["n1"], {"rack": BudgetClaim(50, 70), "hall": BudgetClaim(50, 70)}, now=0)
    assert book.totals() == {"rack": BudgetClaim(150, 270), "hall": BudgetClaim(50, 70)}


def test_holding_again_replaces_instead_of_adding() -> None:
    book = ReservationBook(ttl_s=60)
    book.hold("ns/a", ["n1", "n2"], {"rack": BudgetClaim(100, 200)}, now=0)
    book.hold("ns/a", ["n1"], {"rack": BudgetClaim(80, 90)}, now=1)
    assert book.totals() == {"rack": BudgetClaim(80, 90)}


def test_own_claim_is_excluded() -> None:
    book = ReservationBook(ttl_s=60)
    book.hold("ns/a", ["n1"], {"rack": BudgetClaim(100, 200)}, now=0)
    book.hold("ns/b", ["n1"], {"rack": BudgetClaim(10, 20)}, now=0)
    assert book.totals(exclude="ns/a") == {"rack": BudgetClaim(10, 20)}


def test_empty_claim_drops_the_pod() -> None:
    book = ReservationBook(ttl_s=60)
    book.hold("ns/a", ["n1"], {"rack": BudgetClaim(100, 200)}, now=0)
    book.hold("ns/a", [], {}, now=1)
    assert len(book) == 0 and book.totals() == {}


def test_released_when_the_telemetry_shows_the_pod() -> None:
    book = ReservationBook(ttl_s=60)
    book.hold("ns/a", ["n1"], {"rack": BudgetClaim(100, 200)}, now=0)
    book.hold("ns/b", ["n1"], {"rack": BudgetClaim(10, 20)}, now=0)
    assert book.release({"ns/a", "other/x"}, now=1) == 1
    assert book.get("ns/a") is None and book.get("ns/b") is not None


def test_released_after_the_timeout() -> None:
    book = ReservationBook(ttl_s=60)
    book.hold("ns/a", ["n1"], {"rack": BudgetClaim(100, 200)}, now=0)
    assert book.release(set(), now=59.9) == 0
    assert book.release(set(), now=60.0) == 1
    assert book.totals() == {}
