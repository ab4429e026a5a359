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
        self.status = status


class SiteUnreachable(MicropauseError):
    """The site could not be reached at all: the run failed and the archive is unchanged."""

    exit_code = 2


class ArchiveError(MicropauseError):
    """The archive database is missing, unreadable or from a newer version of this tool."""

    exit_code = 1
