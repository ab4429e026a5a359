"""Listing inference on plain pages: which listings are walked, which are proven, that a page 1
that contradicts a prediction has its own listing walked, and that every choice is made when the
queue runs dry, whatever order the pages arrived in."""

from __future__ import annotations

import dataclasses
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


def see_lesson(inference: ListingInference, post: str, posts=POSTS) -> None:
    first = page(post, 1, posts)
    inference.learn(first, {p: p for p in first.listed})
    inference.lesson_seen(PageOne(post, first.categories, first.listed, first.page_count))


def walk(inference: ListingInference, post: str, posts=POSTS) -> None:
    """Read the rest of ``post``'s listing."""
    for n in range(2, page(post, 1, posts).page_count + 1):
        listing_page = page(post, n, posts)
        inference.learn(listing_page, {p: p for p in listing_page.listed})
        inference.listing_page_seen(post, listing_page, listing_page.listed)


def walked_for(posts) -> ListingInference:
    """Inference after ``posts``' pages were seen and the listings it chose were walked."""
    inference = ListingInference(audit_listings=0)
    for post in posts:
        see_lesson(inference, post)
    while chosen := inference.drained():
        for post in chosen:
            walk(inference, post)
    return inference


def test_a_walk_of_each_category_proves_every_other_listing():
    inference = ListingInference(audit_listings=0)
    for post in POSTS:
        see_lesson(inference, post)  # nothing is decided before the queue runs dry
    assert inference.walks == {}
    chosen = []
    while walks := inference.drained():
        assert len(walks) == 1  # one at a time: each walk shows more of the site
        chosen += walks
        walk(inference, walks[0])
    assert set().union(*(POSTS[p] for p in chosen)) == {"x", "y", "z"}
    # Covering x, y and z costs at most 4 listing pages here (p6 + p2 would be 3).
    assert sum(page(p, 1).page_count for p in chosen) <= 4
    assert inference.settled
    assert inference.counts.walked == len(chosen)
    assert set(inference.inferred) == set(POSTS) - set(chosen)
    assert inference.counts.contradicted == 0


def test_the_choice_does_not_depend_on_the_order_pages_arrived_in():
    def run(order):
        inference = ListingInference(audit_listings=1)
        for post in order:
            see_lesson(inference, post)
        asked = []
        while chosen := inference.drained():
            asked.append(chosen)
            for post in chosen:
                walk(inference, post)
        return asked, inference.counts

    orders = [list(POSTS), list(reversed(POSTS)), sorted(POSTS, key=lambda p: POSTS[p] == {"x"})]
    assert len({repr(run(order)) for order in orders}) == 1


def test_what_is_proven_is_the_listing_the_site_shows():
    inference = walked_for(POSTS)
    for post, lesson in inference.inferred.items():
        assert inference._members(lesson) == set(listing_of(post)), post


def test_a_lesson_whose_categories_are_known_is_proven_when_the_queue_runs_dry():
    inference = walked_for(["p6", "p7"])
    see_lesson(inference, "p3")
    assert "p3" in inference.waiting
    assert inference.drained() == []
    assert "p3" in inference.inferred


def test_a_lesson_waits_while_a_walk_that_will_know_its_categories_is_read():
    inference = ListingInference(audit_listings=0)
    see_lesson(inference, "p6")
    assert inference.drained() == ["p6"]
    see_lesson(inference, "p4")  # {x}: p6's walk is under way
    assert inference.drained() == []
    assert "p4" in inference.waiting
    walk(inference, "p6")
    assert inference.drained() == []
    assert "p4" in inference.inferred


def test_a_page_one_that_contradicts_the_prediction_has_its_own_listing_walked():
    inference = walked_for(["p6", "p7", "p1"])
    assert "p1" in inference.inferred  # proven: every {x} post is known
    # p4's page 1 is not what its categories predict: a post nobody else lists comes first.
    first = page("p4", 1)
    odd = PageOne("p4", first.categories, ("p0", *first.listed[:1]), first.page_count)
    inference.lesson_seen(odd)
    assert inference.drained() == ["p4"]
    assert inference.counts.contradicted == 1
    # That listing alone: p1 stays proven, and a later lesson in {x} is still proven.
    assert "p1" in inference.inferred
    see_lesson(inference, "p3")
    assert inference.drained() == []
    assert "p3" in inference.inferred
    # The categories are reported, for the next run to walk.
    assert inference.untrusted == {"x"}


# Listings of three pages and more: what tells a full page from page 1's sticky posts.
LONG = {f"a{i}": {"x"} for i in range(7)} | {f"b{i}": {"y"} for i in range(7)} | {"c": {"x", "y"}}


def test_sticky_posts_are_neither_members_nor_contradictions():
    stickies = ("s1", "s2")

    def with_sticky(post, n, before):
        listed = page(post, n, LONG)
        if n > 1:
            return listed
        shown = (*stickies, *listed.listed) if before else (*listed.listed, *stickies)
        cats = (frozenset({"members"}),) * len(stickies)
        listed_cats = listed.listed_categories
        listed_cats = (*cats, *listed_cats) if before else (*listed_cats, *cats)
        return dataclasses.replace(listed, listed=shown, listed_categories=listed_cats)

    for before in (True, False):
        inference = ListingInference(audit_listings=0)
        for post in LONG:
            first = with_sticky(post, 1, before)
            inference.learn(first, {p: p for p in first.listed})
            inference.lesson_seen(PageOne(post, first.categories, first.listed, first.page_count))
        while chosen := inference.drained():
            for post in chosen:
                for n in range(2, page(post, 1, LONG).page_count + 1):
                    listed = with_sticky(post, n, before)
                    inference.learn(listed, {p: p for p in listed.listed})
                    inference.listing_page_seen(post, listed, listed.listed)
        assert inference.sticky == set(stickies)
        assert inference.per_page == PER_PAGE
        assert inference.counts.contradicted == 0
        assert inference.counts.inferred > inference.counts.walked
        assert inference.settled


def test_a_walk_that_fails_proves_nothing_and_its_lessons_wait_for_another():
    inference = ListingInference(audit_listings=0)
    see_lesson(inference, "p6")
    assert inference.drained() == ["p6"]
    see_lesson(inference, "p4")
    inference.listing_page_failed("p6")
    assert not inference.settled
    # The next time the queue runs dry, another lesson is walked for {x}.
    assert inference.drained() == ["p4"]


def test_a_listing_that_changes_while_it_is_walked_is_read_to_its_end_and_proves_nothing():
    inference = ListingInference(audit_listings=0)
    see_lesson(inference, "p6")
    inference.drained()
    grown = {"p0": {"x"}, **POSTS}  # a post published meanwhile
    second = page("p6", 2, grown)
    assert second.page_count != page("p6", 1).page_count
    inference.listing_page_seen("p6", second, second.listed)
    walk_ = inference.walks["p6"]
    assert walk_.changed and walk_.last == second.page_count
    assert not walk_.complete


def test_an_audit_walks_a_proven_listing_and_notices_what_page_one_could_not_show():
    inference = ListingInference(audit_listings=1)
    for post in POSTS:
        see_lesson(inference, post)
    audited = []
    while chosen := inference.drained():
        for post in chosen:
            if inference.walks[post].audit:
                audited.append(post)
                # Past its page 1 the listing shows a post no prediction has.
                last = page(post, 1).page_count
                odd = dataclasses.replace(page(post, 1), page=2, listed=("p9",))
                inference.learn(odd, {"p9": "p9"})
                inference.walks[post].last = max(last, 2)
                inference.listing_page_seen(post, odd, ("p9",))
                for n in range(3, last + 1):
                    inference.listing_page_seen(post, page(post, n), page(post, n).listed)
            else:
                walk(inference, post)
    assert len(audited) == 1
    assert inference.counts.audited == 1
    assert inference.counts.audits_contradicted == 1
    assert inference.untrusted == POSTS[audited[0]]


def test_a_lesson_without_categories_is_walked_when_the_queue_runs_dry():
    inference = ListingInference()
    inference.lesson_seen(PageOne("p9", frozenset(), ("p1", "p2"), 3))
    assert inference.drained() == ["p9"]


def settled_with_dates(order: list[str]) -> ListingInference:
    """Inference over posts of one category, newest first as ``order``, each page 1 read with
    its date, and the listings it chose walked."""
    posts = {post: {"x"} for post in order}
    inference = ListingInference(audit_listings=0)
    for i, post in enumerate(order):
        first = page(post, 1, posts)
        inference.learn(first, {p: p for p in first.listed})
        inference.lesson_seen(
            PageOne(post, first.categories, first.listed, first.page_count, f"2024-01-{31 - i}")
        )
    while chosen := inference.drained():
        for post in chosen:
            walk(inference, post, posts)
    assert inference.settled
    return inference


def test_a_post_no_page_read_lists_gets_the_one_page_of_a_proven_listing_that_shows_it():
    """A listing leaves its own lesson out: when the one walk of a category is the listing of
    a post that no page 1 shows (not among anyone's newest), no page read lists that post,
    though a full walk would (with its thumbnail). The page of a proven listing where it
    stands, newest first by date, is asked for, once."""
    # Newest first; "a-old" sorts first, so its listing is the one walked for category x.
    order = ["p1", "p2", "p3", "a-old", "p5", "p6"]
    inference = settled_with_dates(order)
    assert list(inference.walks) == ["a-old"]
    assert set(inference.inferred) == set(order) - {"a-old"}
    asked = inference.pages_showing_unlisted()
    # The shortest proven listing holding it (all are 3 pages; the first by URL): p1's, where
    # a-old is third after p2 and p3, on page 2 of 2 a page.
    assert asked == [("p1", 2)]
    assert page("p1", 2, {post: {"x"} for post in order}).listed[0] == "a-old"
    assert inference.pages_showing_unlisted() == []  # asked once


def test_no_page_is_asked_for_when_the_walked_lessons_post_is_on_a_page_1():
    # "a-new" is walked, and as the newest post it is on every other page 1.
    inference = settled_with_dates(["a-new", "p2", "p3", "p4", "p5", "p6"])
    assert list(inference.walks) == ["a-new"]
    assert inference.pages_showing_unlisted() == []
