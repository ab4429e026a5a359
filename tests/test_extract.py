"""Extraction from HTML strings shaped like the site's Divi markup (see tests/site/render.py)."""

import pytest

from pipeline.config import load_config
from pipeline.extract import MAX_LISTING_PAGES, extract

SELECTORS = load_config("config/movementality.toml").selectors
URL = "https://movementality.se/video/dive-deeper-2/"


def page(
    title="Body Intelligence &#8211; Dive deeper, 2: the breath",
    description="<p>First paragraph.</p><p>\n   Second\n   one.\n</p>",
    items="",
    pagenavi="",
):
    return f"""<!DOCTYPE html><html><head>
<title>{title} | Movementality</title>
<link rel="canonical" href="https://movementality.se/video/dive-deeper-2/" />
</head><body><header><nav><a href="/">Home</a></nav></header>
<article id="post-123" class="et_pb_post post-123 video type-video">
  <h1 class="entry-title">{title}</h1>
  <p class="post-meta"> by <span class="author vcard"><a href="/author/josefine/">josefine</a>
  </span> | <span class="published">Jun 6, 2025</span></p>
  <div class="entry-content"><div class="et_pb_section"><div class="et_pb_row">
    <div class="et_pb_video"><iframe src="https://player.vimeo.com/video/1"></iframe></div>
    <div class="et_pb_text et_pb_text_0"><div class="et_pb_text_inner">{description}</div></div>
    <div class="et_pb_text"><div class="et_pb_text_inner"><h2>You may also like</h2></div></div>
    <div class="et_pb_blog_grid clearfix">{items}{pagenavi}</div>
  </div></div></div>
</article><footer>© Movementality</footer><script>var x = "<p>not text</p>";</script>
</body></html>"""


def item(slug, title, paragraphs=("Its description.",)):
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return f"""<article id="post-9" class="et_pb_post clearfix video">
  <a href="https://movementality.se/video/{slug}/" class="entry-featured-image-url"><img></a>
  <h2 class="entry-title"><a href="https://movementality.se/video/{slug}/">{title}</a></h2>
  <div class="post-content"><div class="post-content-inner"><p></p>{body}</div></div>
</article>"""


PAGENAVI = """<div class="wp-pagenavi" role="navigation">
  <span class="pages">Page 1 of 17</span><span class="current">1</span>
  <a class="page larger" title="Page 2" href="https://movementality.se/video/dive-deeper-2/page/2/">2</a>
  <a class="page larger" href="/video/dive-deeper-2/page/3/">3</a><span class="extend">...</span>
  <a class="nextpostslink" rel="next" aria-label="Next Page"
     href="https://movementality.se/video/dive-deeper-2/page/2/">&raquo;</a>
  <a class="last" href="https://movementality.se/video/dive-deeper-2/page/17/">Last &raquo;</a>
</div>"""


def test_own_lesson_with_entities_decoded_and_paragraphs_joined():
    got = extract(page(), URL, SELECTORS)
    assert got.lesson.url == URL
    assert got.lesson.title == "Body Intelligence \u2013 Dive deeper, 2: the breath"
    assert got.lesson.description == "First paragraph.\n\nSecond one."
    assert got.lesson.author == "josefine"
    assert got.lesson.published == "Jun 6, 2025"


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("it&#8217;s", "it\u2019s"),
        ("it's", "it's"),
        ("&#8220;stuck&#8221;", "\u201cstuck\u201d"),
        ("hips &amp; back", "hips & back"),
        ("a &lt;b&gt; tag", "a <b> tag"),
        ("&lt;script&gt;alert(1)&lt;/script&gt;", "<script>alert(1)</script>"),
        ("hip joins ,  twice", "hip joins ,  twice"),  # typos and odd spacing are content
        ("wrapped\n    in the source", "wrapped in the source"),
        ("no&nbsp;break", "no\u00a0break"),
        ("line one<br />line two", "line one\nline two"),
        ("<em>lean</em>ing", "leaning"),
        ("wait&#8230;", "wait\u2026"),
    ],
)
def test_text_is_decoded_and_otherwise_verbatim(html, text):
    got = extract(page(description=f"<p>{html}</p>"), URL, SELECTORS)
    assert got.lesson.description == text


def test_listed_lessons_pagination_and_next_link():
    items = item("a", "Walking, 2: b&#8217;s") + item("b", "Standing, breathing rotation")
    got = extract(page(items=items, pagenavi=PAGENAVI), URL, SELECTORS)
    assert got.listed == (
        "https://movementality.se/video/a/",
        "https://movementality.se/video/b/",
    )
    assert (got.page, got.page_count) == (1, 17)
    assert got.next_url == "https://movementality.se/video/dive-deeper-2/page/2/"
    assert got.page_urls == tuple(
        f"https://movementality.se/video/dive-deeper-2/page/{n}/" for n in (2, 3, 17)
    )


def test_listing_descriptions_do_not_leak_into_the_lesson():
    items = item("a", "Other", ("Listed text.",))
    got = extract(page(items=items), URL, SELECTORS)
    assert "Listed text" not in got.lesson.description


def test_page_without_the_theme_markup_yields_nothing_not_an_error():
    got = extract("<html><body><p>Maintenance</p></body></html>", URL, SELECTORS)
    assert got.lesson is None
    assert got.listed == ()
    assert got.page_count is None and got.next_url is None


def test_last_page_has_no_next_link():
    navi = '<div class="wp-pagenavi"><span class="pages">Page 17 of 17</span></div>'
    got = extract(page(pagenavi=navi), URL + "page/17/", SELECTORS)
    assert (got.page, got.page_count, got.next_url) == (17, 17, None)


def test_bytes_are_accepted():
    got = extract(page().encode("utf-8"), URL, SELECTORS)
    assert got.lesson.title.startswith("Body Intelligence \u2013")


@pytest.mark.parametrize(
    "shown",
    [
        "Page 1 of 1000000",
        "Page 1 of 100000000000000000000",
        "Page 1 of " + "9" * 5000,
        "Page 0 of 17",
        "Page 18 of 17",
        "Page 1 of 0",
    ],
)
def test_a_page_count_out_of_range_is_read_as_none_and_said(shown):
    navi = f'<div class="wp-pagenavi"><span class="pages">{shown}</span></div>'
    got = extract(page(pagenavi=navi), URL, SELECTORS)
    assert (got.page, got.page_count) == (None, None)
    (anomaly,) = got.anomalies
    assert anomaly.startswith("page count out of range")
    assert len(anomaly) < 130


def test_the_largest_listing_believed():
    navi = f'<div class="wp-pagenavi"><span class="pages">Page 3 of {MAX_LISTING_PAGES}</span>'
    got = extract(page(pagenavi=navi + "</div>"), URL, SELECTORS)
    assert (got.page, got.page_count, got.anomalies) == (3, MAX_LISTING_PAGES, ())


def test_categories_are_read_from_the_lesson_and_each_listed_lesson():
    html = """<article class="et_pb_post post-1 subcategory-decoy category-breathing
        category-micro-pause"><h1 class="entry-title">A</h1>
      <div class="et_pb_blog_grid">
        <article class="et_pb_post category-feet"><h2 class="entry-title"><a href="/video/b/">B</a></h2></article>
        <article class="et_pb_post hentry"><h2 class="entry-title"><a href="/video/c/">C</a></h2></article>
      </div></article>"""  # noqa: E501
    got = extract(html, URL, SELECTORS)
    assert got.categories == {"breathing", "micro-pause"}  # not "decoy"
    assert got.listed_categories == (frozenset({"feet"}), frozenset())
