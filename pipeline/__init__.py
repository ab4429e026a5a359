"""micropause-archive: crawl the Micro Pause lesson site into an SQLite archive."""

__version__ = "0.1.0"
