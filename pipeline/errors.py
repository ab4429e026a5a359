"""The errors a caller can catch by meaning. Each carries the exit code the CLI gives it."""


class MicropauseError(Exception):
    """Base of every error the tool reports as one line, never as a traceback."""

    exit_code = 1


class ConfigError(MicropauseError):
    """The configuration or the command line is wrong: nothing was fetched or written."""

    exit_code = 1


class FetchError(MicropauseError):
    """One URL could not be fetched, after any retries it deserved."""

    exit_code = 2

    def __init__(self, url: str, reason: str, status: int | None = None):
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason
        self.status = status  # the HTTP status of the last answer, when there was one


class SiteUnreachable(MicropauseError):
    """The site could not be reached at all: the run failed and the archive is unchanged."""

    exit_code = 2


class CrawlRefused(MicropauseError):
    """The site's robots.txt forbids the crawl, or asks for more than the configuration allows
    (a Crawl-delay above politeness.max_crawl_delay): nothing was crawled."""

    exit_code = 2


class ArchiveWriteError(MicropauseError):
    """The archive itself cannot be written (disk full, database locked or corrupt): the run
    stopped at once and its writes were rolled back."""

    exit_code = 2


class ArchiveError(MicropauseError):
    """The archive database is missing, unreadable or from a newer version of this tool."""

    exit_code = 1


class HealthCheckFailed(MicropauseError):
    """The run finished and its lessons were saved, but it failed a health check (the theme
    changed, far fewer lessons than last time, too many failed pages): nothing was marked
    removed and no snapshot was exported. ``report`` is the run's RunReport."""

    exit_code = 3

    def __init__(self, report):
        names = ", ".join(failure.name for failure in report.health)
        super().__init__(
            f"run {report.run_id} failed health checks ({names}): its lessons were saved, "
            "nothing was marked removed and no snapshot was exported"
        )
        self.report = report


class DeadlinePassed(MicropauseError):
    """The run was stopped by its deadline (politeness.max_run_seconds) before it had read
    every page: what it read is saved (and exported by `run`), nothing was marked removed, and
    the archive may be behind the site. A monitor must be able to tell this from success."""

    exit_code = 5

    def __init__(self, report):
        super().__init__(
            f"run {report.run_id} stopped at its deadline (politeness.max_run_seconds) before "
            "it had read every page: what it read is saved, nothing was marked removed"
        )
        self.report = report


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP, handled as Ctrl-C is (a KeyboardInterrupt): the run is recorded as
    interrupted and the lock released. The exit code is 128 + the signal's number."""

    def __init__(self, signum: int, name: str):
        super().__init__(name)
        self.signum = signum
        self.name = name


class LockHeld(MicropauseError):
    """Another process is crawling into (or exporting) the same archive. Nothing was done;
    try again later. 75 is EX_TEMPFAIL from sysexits.h: a temporary condition."""

    exit_code = 75


class ExportError(MicropauseError):
    """A snapshot could not be written (disk full, no permission). The archive is fine and
    the previous snapshot stands."""

    exit_code = 4
