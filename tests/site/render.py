"""Markup of the fixture site: WordPress + Divi pages, WP-PageNavi, core sitemaps.

Pure functions from data to text; the server decides what to render and when. The markup copies
the class names and nesting of movementality.se's pages because the crawler's
selectors are written against them, including the awkward parts: listing items are
``article.et_pb_post`` just like the lesson itself, every listing excerpt starts with an empty
``<p></p>``, and text arrives texturized (typography as numeric entities).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date
from html import escape
from typing import Protocol
from xml.sax.saxutils import escape as xml_escape

SITE_NAME = "Movementality"
DIVI_VERSION = "4.27.4"

# WordPress's wptexturize() emits typography as numeric entities, so the crawler must decode them;
# we apply the same mapping to the stored (real Unicode) text.
_TYPOGRAPHY = {
    "\u2013": "&#8211;",  # en dash
    "\u2014": "&#8212;",  # em dash
    "\u2019": "&#8217;",  # right single quote / apostrophe
    "\u2018": "&#8216;",
    "\u201c": "&#8220;",
    "\u201d": "&#8221;",
    "\u2026": "&#8230;",
    "\u00a0": "&nbsp;",
}
_TYPOGRAPHY_RE = re.compile("|".join(_TYPOGRAPHY))
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class LessonLike(Protocol):
    slug: str
    title: str
    author: str
    published: str
    categories: list[str]
    description: list[str]
    listing_description: list[str]
    post_id: int
    video: str


def texturize(text: str, *, attr: bool = False) -> str:
    """Escape text for HTML, then encode typography the way WordPress does on output."""
    out = escape(text, quote=False)
    if attr:
        # esc_attr() style: double quotes as &quot;, single quotes as &#039;.
        out = out.replace('"', "&quot;").replace("'", "&#039;")
    return _TYPOGRAPHY_RE.sub(lambda m: _TYPOGRAPHY[m.group(0)], out)


def display_date(iso_date: str) -> str:
    """``2025-06-06`` -> ``Jun 6, 2025`` (Divi's post-meta format), independent of the locale."""
    d = date.fromisoformat(iso_date)
    return f"{_MONTHS[d.month - 1]} {d.day}, {d.year}"


def term_slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def lesson_url(base: str, slug: str, page: int = 1) -> str:
    # WordPress never links /page/1/: page 1 of a listing is the lesson URL itself.
    url = f"{base}/video/{slug}/"
    return url if page <= 1 else f"{url}page/{page}/"


def _post_classes(lesson: LessonLike, extra: str = "") -> str:
    cats = " ".join(f"category-{term_slug(c)}" for c in sorted(lesson.categories, key=term_slug))
    prefix = f"et_pb_post {extra} " if extra else "et_pb_post "
    return (
        f"{prefix}post-{lesson.post_id} video type-video status-publish has-post-thumbnail "
        f"hentry {cats}"
    ).strip()


def _head(base: str, title: str, canonical: str, extra_links: Sequence[str], post_id: int) -> str:
    links = "\n".join(extra_links)
    shortlink = f"<link rel='shortlink' href='{base}/?p={post_id}' />\n" if post_id else ""
    return f"""<!DOCTYPE html>
<html lang="en-US">
<head>
	<meta charset="UTF-8" />
<meta http-equiv="X-UA-Compatible" content="IE=edge">
	<link rel="pingback" href="{base}/xmlrpc.php" />

	<script type="text/javascript">
		document.documentElement.className = 'js';
	</script>

	<title>{texturize(title)} | {SITE_NAME}</title>
<meta name='robots' content='max-image-preview:large' />
<link rel="alternate" type="application/rss+xml" title="{SITE_NAME} &raquo; Feed" href="{base}/feed/" />
<link rel='stylesheet' id='divi-style-css' href='{base}/wp-content/themes/Divi/style.min.css?ver={DIVI_VERSION}' type='text/css' media='all' />
<script type="text/javascript" src="{base}/wp-includes/js/jquery/jquery.min.js?ver=3.7.1" id="jquery-core-js"></script>
<link rel="https://api.w.org/" href="{base}/wp-json/" />
<link rel="canonical" href="{canonical}" />
{shortlink}{links}
<meta name="viewport" content="width=device-width, initial-scale=1.0, maximum-scale=1.0, user-scalable=0" />
</head>
"""  # noqa: E501


def _header(base: str) -> str:
    items = [
        ("Home", f"{base}/", 25),
        ("About", f"{base}/about/", 31),
        ("Contact", f"{base}/contact/", 32),
    ]
    menu = "\n".join(
        f'<li id="menu-item-{i}" class="menu-item menu-item-type-post_type menu-item-object-page '
        f'menu-item-{i}"><a href="{href}">{label}</a></li>'
        for label, href, i in items
    )
    return f"""	<div id="page-container">
			<header id="main-header" data-height-onload="66">
			<div class="container clearfix et_menu_container">
							<div class="logo_container">
					<span class="logo_helper"></span>
					<a href="{base}/">
						<img src="{base}/wp-content/uploads/2021/03/movementality-logo.png" width="93" height="43" alt="{SITE_NAME}" id="logo" data-height-percentage="54" />
					</a>
				</div>
							<div id="et-top-navigation" data-height="66" data-fixed-height="40">
											<nav id="top-menu-nav">
						<ul id="top-menu" class="nav">{menu}
</ul>						</nav>
				</div> <!-- #et-top-navigation -->
			</div> <!-- .container -->
		</header> <!-- #main-header -->
			<div id="et-main-area">
"""  # noqa: E501


def _footer(base: str) -> str:
    return f"""			<footer id="main-footer">
				<div id="footer-bottom">
					<div class="container clearfix">
				<div id="footer-info">&copy; 2025 {SITE_NAME} &#8211; all rights reserved</div>					</div>
				</div>
			</footer>
		</div>
	</div> <!-- #page-container -->

	<script type="text/javascript" id="divi-custom-script-js-extra">
/* <![CDATA[ */
var DIVI = {{"item_count":"%d Item","items_count":"%d Items"}};
var et_pb_custom = {{"ajaxurl":"{base}\\/wp-admin\\/admin-ajax.php","is_divi_theme_used":"1"}};
/* ]]> */
</script>
<script type="text/javascript" src="{base}/wp-content/themes/Divi/js/scripts.min.js?ver={DIVI_VERSION}" id="divi-custom-script-js"></script>
</body>
</html>
"""  # noqa: E501


def _body_open(body_class: str) -> str:
    return (
        f'<body class="{body_class} et_pb_button_helper_class et_fixed_nav et_show_nav '
        "et_primary_nav_dropdown_animation_fade et_secondary_nav_dropdown_animation_fade "
        "et_header_style_left et_pb_footer_columns4 et_cover_background et_pb_gutter "
        'linux et_pb_gutters3 et_full_width_page et_divi_theme et-db">\n'
    )


def _pagenavi(base: str, slug: str, page: int, pages: int) -> str:
    """WP-PageNavi: a window of 5 numbered pages, dots, multiples of 10, arrows, First/Last."""

    def link(cls: str, target: int, text: str, *, rel: str = "", label: str = "") -> str:
        rel_attr = f' rel="{rel}"' if rel else ""
        label_attr = f' aria-label="{label}"' if label else f' title="Page {target}"'
        href = lesson_url(base, slug, target)
        return f'<a class="{cls}"{rel_attr}{label_attr} href="{href}">{text}</a>'

    start = max(1, min(page - 2, pages - 4))
    end = min(pages, start + 4)
    parts = [f'<span class="pages">Page {page} of {pages}</span>']
    if page > 1:
        parts.append(link("first", 1, "&laquo; First", label="First Page"))
        parts.append(
            link("previouspostslink", page - 1, "&laquo;", rel="prev", label="Previous Page")
        )
    if start > 1:
        parts.append('<span class="extend">...</span>')
    for n in range(start, end + 1):
        if n == page:
            parts.append(f'<span aria-current="page" class="current">{n}</span>')
        else:
            parts.append(link("page smaller" if n < page else "page larger", n, str(n)))
    if end < pages:
        parts.append('<span class="extend">...</span>')
        # PageNavi's "larger page numbers": jump links to multiples of 10 past the window.
        parts.extend(link("larger page", n, str(n)) for n in range(10, pages, 10) if n > end)
    if page < pages:
        parts.append(link("nextpostslink", page + 1, "&raquo;", rel="next", label="Next Page"))
        parts.append(link("last", pages, "Last &raquo;", label="Last Page"))
    inner = "\n".join(parts)
    return f'<div class="wp-pagenavi" role="navigation">\n{inner}\n</div>'


def thumbnail_url(base: str, lesson: LessonLike, size: str = "400x250") -> str:
    """Where WordPress keeps a lesson's featured image, in one of its sizes."""
    year, month = lesson.published[:4], lesson.published[5:7]
    return f"{base}/wp-content/uploads/{year}/{month}/{lesson.slug}-{size}.jpg"


def vimeo_id(lesson: LessonLike) -> int:
    return 700_000_000 + lesson.post_id * 7919


_VIDEO_FILES = (".mp4", ".webm", ".ogv", ".mov")


def _video_box(base: str, lesson: LessonLike) -> str:
    """Divi's video module: a player's iframe, or a <video> for a file in the media library."""
    video = lesson.video
    if video.endswith(_VIDEO_FILES) and not video.startswith(("http://", "https://")):
        return (
            f'<div class="et_pb_video_box"><video controls><source type="video/mp4" '
            f'src="{base}{escape(video)}" /></video></div>'
        )
    src = (
        escape(video)
        if video
        else f"https://player.vimeo.com/video/{vimeo_id(lesson)}?dnt=1&amp;app_id=122963"
    )
    return (
        f'<div class="et_pb_video_box"><iframe title="{texturize(lesson.title, attr=True)}" '
        f'width="1080" height="608" src="{src}" frameborder="0" allow="autoplay; fullscreen; '
        'picture-in-picture; clipboard-write" allowfullscreen></iframe></div>'
    )


def _listing_item(base: str, item: LessonLike, index: int) -> str:
    url = lesson_url(base, item.slug)
    thumb = thumbnail_url(base, item)
    paras = "\n".join(f"<p>{texturize(p)}</p>" for p in item.listing_description)
    classes = _post_classes(item, f"clearfix et_pb_blog_item_0_{index}")
    return f"""			<article id="post-{item.post_id}" class="{classes}">

				<div class="et_pb_image_container"><a href="{url}" class="entry-featured-image-url"><img loading="lazy" decoding="async" src="{thumb}" alt="{texturize(item.title, attr=True)}" class="" width="400" height="250" /></a></div>
														<h2 class="entry-title"><a href="{url}">{texturize(item.title)}</a></h2>

					<div class="post-content"><div class="post-content-inner"><p></p>
{paras}
</div></div>
			</article>"""  # noqa: E501


def lesson_page(
    base: str,
    lesson: LessonLike,
    items: Sequence[LessonLike],
    page: int,
    pages: int,
    *,
    own_thumbnail: bool = False,
) -> str:
    """A lesson page; ``items`` are the listing items shown on listing page ``page``. With
    ``own_thumbnail``, the page shows the lesson's featured image under its title, as Divi
    does when the theme's "show thumbnails on posts" option is on."""
    canonical = lesson_url(base, lesson.slug, page)
    links = []
    if page > 1:
        links.append(f'<link rel="prev" href="{lesson_url(base, lesson.slug, page - 1)}" />')
    if page < pages:
        links.append(f'<link rel="next" href="{lesson_url(base, lesson.slug, page + 1)}" />')
    author = texturize(lesson.author)
    author_url = f"{base}/author/{term_slug(lesson.author)}/"
    description = "\n".join(f"<p>{texturize(p)}</p>" for p in lesson.description)
    featured = (
        f'<img src="{thumbnail_url(base, lesson, "1080x675")}" alt="" class="" width="1080" '
        'height="675" />'
        if own_thumbnail
        else ""
    )
    articles = "\n".join(_listing_item(base, item, i) for i, item in enumerate(items))
    navi = _pagenavi(base, lesson.slug, page, pages) if items else ""
    body_class = f"video-template-default single single-video postid-{lesson.post_id}"
    if page > 1:
        body_class += f" paged-{page} single-paged-{page}"
    main = f"""<div id="main-content">
		<div class="container">
		<div id="content-area" class="clearfix">
			<div id="left-area">
											<article id="post-{lesson.post_id}" class="{_post_classes(lesson)}">
											<div class="et_post_meta_wrapper">
							<h1 class="entry-title">{texturize(lesson.title)}</h1>

						<p class="post-meta"> by <span class="author vcard"><a href="{author_url}" title="Posts by {texturize(lesson.author, attr=True)}" rel="author">{author}</a></span> | <span class="published">{display_date(lesson.published)}</span></p>
{featured}												</div>

				<div class="entry-content">
				<div class="et-l et-l--post">
			<div class="et_builder_inner_content et_pb_gutters3">
		<div class="et_pb_section et_pb_section_0 et_section_regular" >
				<div class="et_pb_row et_pb_row_0">
				<div class="et_pb_column et_pb_column_4_4 et_pb_column_0  et_pb_css_mix_blend_mode_passthrough et-last-child">
				<div class="et_pb_module et_pb_video et_pb_video_0">
				{_video_box(base, lesson)}
			</div><div class="et_pb_module et_pb_text et_pb_text_0  et_pb_text_align_left et_pb_bg_layout_light">
				<div class="et_pb_text_inner">{description}</div>
			</div><div class="et_pb_module et_pb_text et_pb_text_1  et_pb_text_align_left et_pb_bg_layout_light">
				<div class="et_pb_text_inner"><h2>You may also like</h2></div>
			</div><div class="et_pb_module et_pb_blog_0 et_pb_blog_grid_wrapper et_pb_bg_layout_light">
					<div class="et_pb_blog_grid clearfix ">
					<div class="et_pb_ajax_pagination_container">
{articles}
{navi}
					</div>
					</div>
				</div>
			</div>
				</div>
			</div>
		</div>
	</div>
				</div>
					</article>
							</div>
		</div>
	</div>
</div>
"""  # noqa: E501
    return (
        _head(base, lesson.title, canonical, links, lesson.post_id)
        + _body_open(body_class)
        + _header(base)
        + main
        + _footer(base)
    )


def simple_page(
    base: str, path: str, title: str, paragraphs: Sequence[str], body_class: str
) -> str:
    """A plain WordPress page (home, about, contact, 404): same chrome, no lesson markup."""
    text = "\n".join(f"<p>{p}</p>" for p in paragraphs)
    main = f"""<div id="main-content">
	<div class="container">
		<div id="content-area" class="clearfix">
			<div id="left-area">
				<article class="et_pb_post page type-page status-publish hentry">
					<h1 class="entry-title main_title">{texturize(title)}</h1>
					<div class="entry-content">
{text}
					</div>
				</article>
			</div>
		</div>
	</div>
</div>
"""
    return (
        _head(base, title, f"{base}{path}", [], 0)
        + _body_open(body_class)
        + _header(base)
        + main
        + _footer(base)
    )


def sitemap_index(base: str, names: Sequence[str]) -> str:
    entries = "".join(f"<sitemap><loc>{base}/{name}</loc></sitemap>" for name in names)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<?xml-stylesheet type="text/xsl" href="{base}/wp-sitemap-index.xsl" ?>\n'
        f'<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{entries}'
        "</sitemapindex>\n"
    )


def sitemap_urlset(base: str, entries: Sequence[tuple[str, str | None]]) -> str:
    """``entries`` are (absolute URL, lastmod or None)."""
    urls = []
    for loc, lastmod in entries:
        mod = f"<lastmod>{xml_escape(lastmod)}</lastmod>" if lastmod else ""
        urls.append(f"<url><loc>{xml_escape(loc)}</loc>{mod}</url>")
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<?xml-stylesheet type="text/xsl" href="{base}/wp-sitemap.xsl" ?>\n'
        f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{"".join(urls)}</urlset>\n'
    )
