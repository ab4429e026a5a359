"""Listing inference on plain pages: which listings are walked, which are proven, and that a
page 1 that contradicts a prediction is walked (with every listing proven the same way)."""

from __future__ import annotations

import math

from pipeline.extract import ListingPage
from pipeline.inference import ListingInference, PageOne

PER_PAGE = 2
# The site newest first: each post and its categories.
POSTS = {
    "p1": {"x"},
    "p2": {"y"},
    "p3": {"x", "y"},
    "p4": {"x"},
    "p5": {"z"},
    "p6": {"x", "z"},
    "p7": {"y"},
}


def listing_of(post: str, posts=POSTS) -> list[str]:
    """The site's rule: every other post sharing a category, newest first."""
    return [p for p, cats in posts.items() if p != post and cats & posts[post]]


def page(post: str, n: int, posts=POSTS) -> ListingPage:
    entries = listing_of(post, posts)
    count = max(1, math.ceil(len(entries) / PER_PAGE))
    shown = entries[(n - 1) * PER_PAGE : n * PER_PAGE]
    return ListingPage(
        url=post if n == 1 else f"{post}/page/{n}",
        lesson=None,
        listed=tuple(shown),
        page=n,
        page_count=count,
        next_url=None,
        page_urls=(),
        categories=frozenset(posts[post]),
        listed_categories=tuple(frozenset(posts[p]) for p in shown),
    )


def see_lesson(inference: ListingInference, post: str, posts=POSTS) -> list[str]:
    first = page(post, 1, posts)
    inference.learn(first, {p: p for p in first.listed})
    return inference.lesson_seen(PageOne(post, first.categories, first.listed, first.page_count))


def walk(inference: ListingInference, post: str, posts=POSTS) -> list[str]:
    """Read the rest of ``post``'s listing; what the inference asks to walk next."""
    asked = []
    for n in range(2, page(post, 1, posts).page_count + 1):
        listing_page = page(post, n, posts)
        inference.learn(listing_page, {p: p for p in listing_page.listed})
        asked += inference.listing_page_seen(post, listing_page, listing_page.listed)
    return asked


def walked_for(posts) -> ListingInference:
    """Inference after ``posts``' pages were seen and the listings it chose were walked."""
    inference = ListingInference()
    for post in posts:
        see_lesson(inference, post)
    for post in inference.drained():
        walk(inference, post)
    return inference


def test_a_walk_of_each_category_proves_every_other_listing():
    inference = ListingInference()
    for post in POSTS:
        assert see_lesson(inference, post) == []  # no category is known yet: all wait
    chosen = inference.drained()
    assert set().union(*(POSTS[p] for p in chosen)) == {"x", "y", "z"}
    # Covering x, y and z costs at most 4 listing pages here (p6 + p2 would be 3).
    assert sum(page(p, 1).page_count for p in chosen) <= 4
    for post in chosen:
        assert walk(inference, post) == []
    assert inference.settled
    assert inference.counts.walked == len(chosen)
    assert set(inference.inferred) == set(POSTS) - set(chosen)
    assert inference.counts.contradicted == 0


def test_what_is_proven_is_the_listing_the_site_shows():
    inference = walked_for(POSTS)
    for post, lesson in inference.inferred.items():
        assert inference._members(lesson) == set(listing_of(post)), post


def test_a_lesson_whose_categories_are_known_is_proven_as_soon_as_its_page_arrives():
    inference = walked_for(["p6", "p7"])
    assert see_lesson(inference, "p3") == []
    assert "p3" in inference.inferred


def test_a_lesson_waits_while_a_walk_that_will_know_its_categories_is_read():
    inference = ListingInference()
    see_lesson(inference, "p6")
    assert inference.drained() == ["p6"]
    assert see_lesson(inference, "p4") == []  # {x}: p6's walk is under way
    assert "p4" in inference.waiting
    assert walk(inference, "p6") == []
    assert "p4" in inference.inferred


def test_a_page_one_that_contradicts_the_prediction_is_walked_with_what_it_proved():
    inference = walked_for(["p6", "p7"])
    assert see_lesson(inference, "p1") == []  # proven: every {x} post is known
    # p4's page 1 is not what its categories predict: a post nobody else lists comes first.
    first = page("p4", 1)
    odd = PageOne("p4", first.categories, ("p0", *first.listed[:1]), first.page_count)
    assert inference.lesson_seen(odd) == ["p4", "p1"]
    assert inference.counts.contradicted == 1
    # Its category is no longer trusted: a later lesson in it is walked, not proven.
    assert see_lesson(inference, "p3") == ["p3"]


def test_a_walk_that_fails_proves_nothing_and_its_lessons_wait_for_another():
    inference = ListingInference()
    see_lesson(inference, "p6")
    assert inference.drained() == ["p6"]
    see_lesson(inference, "p4")
    assert inference.listing_page_failed("p6") == []
    assert not inference.settled
    # The next time the queue runs dry, another lesson is walked for {x}.
    assert inference.drained() == ["p4"]


def test_a_listing_that_changes_while_it_is_walked_proves_nothing():
    inference = ListingInference()
    see_lesson(inference, "p6")
    inference.drained()
    grown = {"p0": {"x"}, **POSTS}  # a post published meanwhile
    second = page("p6", 2, grown)
    assert second.page_count != page("p6", 1).page_count
    inference.listing_page_seen("p6", second, second.listed)
    assert inference.walks["p6"].failed


def test_a_lesson_without_categories_is_walked_at_once():
    inference = ListingInference()
    assert inference.lesson_seen(PageOne("p9", frozenset(), ("p1", "p2"), 3)) == ["p9"]
