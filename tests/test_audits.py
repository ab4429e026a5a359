"""Audits close what page 1 cannot show: every run walks a few of the listings proven instead of
walked, the ones walked longest ago first, so a listing that differs from its proof only past
page 1 is found within as many runs as the rotation promises; what it hid is archived, and the
run says so."""

from __future__ import annotations

import dataclasses
import json
import math

from sqlite_utils import Database

from pipeline.run import crawl_into_archive
from tests.conftest import local_config
from tests.site.server import FixtureSite, Lesson, load_lessons

AUDITS = 8
# Two lessons in a category of their own: only the odd listing shows them.
HIDDEN = [
    Lesson(
        slug=f"hidden-{n}",
        title=f"Hidden {n}",
        published=f"2019-02-0{n}",
        modified=f"2019-02-0{n}T12:00:00Z",
        categories=["Hidden"],
        description=[f"Only one listing shows hidden lesson {n}, past its page 1."],
    )
    for n in (1, 2)
]


def config_of(site, audits=AUDITS):
    config = local_config(site)
    return dataclasses.replace(
        config, scope=dataclasses.replace(config.scope, audit_listings=audits)
    )


def slugs(db_path) -> set[str]:
    return {row["slug"] for row in Database(db_path).query("select slug from lessons")}


def odd_site(odd: str) -> FixtureSite:
    """The fixture site, but ``odd``'s listing shows the hidden lessons in place of its two
    oldest entries: the same page count, the same page 1."""
    lessons = [*load_lessons(), *HIDDEN]
    with FixtureSite(lessons, sitemap=False) as plain:
        listing = plain.listing(odd)
        pages = plain.page_count(odd)
    replaced = {listing[-1].slug: HIDDEN[0].slug, listing[-2].slug: HIDDEN[1].slug}
    site = FixtureSite(lessons, sitemap=False, replaced_listed={odd: replaced})
    assert site.page_count(odd) == pages > 2
    return site


def test_a_listing_unlike_its_proof_past_page_one_is_found_within_the_promised_runs(tmp_path):
    db_path = tmp_path / "micropause.db"
    # A listing the first crawl proves (it walks as few as cover the categories).
    with odd_site("the-heavy-arms") as site:
        first = crawl_into_archive(config_of(site), db_path)
        listings = first.result.listings
        assert first.result.complete and listings.audited == AUDITS
        assert not {x.slug for x in HIDDEN} & slugs(db_path), "the first crawl cannot see it"
        # Each run audits AUDITS listings, those never walked first: every proven listing
        # is walked within this many runs.
        promised = 1 + math.ceil((listings.inferred - listings.audited) / AUDITS)
        reports = [first]
        while not {x.slug for x in HIDDEN} <= slugs(db_path) and len(reports) < promised:
            reports.append(crawl_into_archive(config_of(site), db_path))
    assert {x.slug for x in HIDDEN} <= slugs(db_path)
    assert len(reports) <= promised
    finder = reports[-1]
    assert finder.result.complete
    assert finder.result.listings.audited == AUDITS
    assert finder.result.listings.audits_contradicted == 1
    runs = list(Database(db_path).query("select * from runs order by id"))
    assert [run["listings_audited"] for run in runs] == [AUDITS] * len(runs)
    assert runs[-1]["audits_contradicted"] == 1
    # The listings sharing its categories are left for the next run to walk in full.
    assert json.loads(runs[-1]["listings_to_walk"])


def test_what_an_audit_found_unlike_its_proof_is_walked_in_full_by_the_next_run(tmp_path):
    db_path = tmp_path / "micropause.db"
    with odd_site("the-heavy-arms") as site:
        crawl_into_archive(config_of(site), db_path)
        found = crawl_into_archive(config_of(site, audits=100), db_path)  # every listing
        assert found.result.listings.audits_contradicted == 1
        to_walk = set(found.result.listings_to_walk)
        assert to_walk
        site.reset_stats()
        after = crawl_into_archive(config_of(site, audits=0), db_path)
        asked = {record.path for record in site.requests}
    assert after.result.complete
    assert to_walk <= set(after.result.listings_walked)
    for url in to_walk:
        path = url.split("//", 1)[1].split("/", 1)[1]
        assert f"/{path}page/2/" in asked or site.page_count(path.split("/")[1]) == 1
