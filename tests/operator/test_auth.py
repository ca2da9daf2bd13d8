"""The TokenReview cache: one review per token per TTL, failures cached briefly, concurrent callers share one."""

from __future__ import annotations

import asyncio

from wattwise.operator.auth import Identity, TokenReviewCache


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_answers_are_cached_by_token_until_their_ttl() -> None:
    seen: list[str] = []

    async def review(token: str) -> Identity:
        seen.append(token)
        return Identity(token == "good", "u")

    clock = Clock()
    cache = TokenReviewCache(review, ttl_s=60, negative_ttl_s=10, clock=clock)
    for _ in range(3):
        assert (await cache.identity("good")).authenticated
        assert not (await cache.identity("bad")).authenticated
    assert seen == ["good", "bad"]
    clock.now = 11  # the failure expires first
    await cache.identity("good")
    await cache.identity("bad")
    assert seen == ["good", "bad", "bad"]
    clock.now = 61
    await cache.identity("good")
    assert seen == ["good", "bad", "bad", "good"]


async def test_concurrent_requests_share_one_review_and_the_cache_is_bounded() -> None:
    calls = 0
    release = asyncio.Event()

    async def review(token: str) -> Identity:
        nonlocal calls
        calls += 1
        await release.wait()
        return Identity(True, token)

    cache = TokenReviewCache(review, max_entries=2)
    waiting = [asyncio.create_task(cache.identity("t")) for _ in range(5)]
    await asyncio.sleep(0)
    release.set()
    assert {i.username for i in await asyncio.gather(*waiting)} == {"t"}
    assert calls == 1
    for token in ("a", "b", "c"):
        await cache.identity(token)
    await cache.identity("t")  # evicted by the bound: reviewed again
    assert calls == 5
