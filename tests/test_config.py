"""Loading the site configuration: the shipped file is valid, and every mistake is named."""

import pytest

from pipeline.config import load_config
from pipeline.errors import ConfigError
from tests.conftest import CONFIG_PATH

SHIPPED = CONFIG_PATH.read_text(encoding="utf-8")


def write(tmp_path, text):
    path = tmp_path / "site.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_config_is_polite():
    config = load_config(CONFIG_PATH)
    assert config.host == "movementality.se"
    assert "micropause-archive" in config.politeness.user_agent
    assert "https://" in config.politeness.user_agent  # a contact URL
    assert config.politeness.delay >= 1.0
    assert config.politeness.concurrency <= 2
    assert 503 in config.retry.statuses and 404 not in config.retry.statuses


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("delay = 1.0", "dleay = 1.0", "unknown config key: politeness.dleay"),
        ("delay = 1.0", 'delay = "slow"', "config key politeness.delay: expected float"),
        ("concurrency = 2", "concurrency = 0", "concurrency: must be between 1 and 32"),
        ("concurrency = 2", "concurrency = 100000", "concurrency: must be between 1 and 32"),
        ("delay = 1.0", "delay = nan", "politeness.delay: expected a finite number, got nan"),
        ("delay = 1.0", "delay = inf", "politeness.delay: expected a finite number, got inf"),
        ("jitter = 0.5", "jitter = -inf", "politeness.jitter: expected a finite number"),
        ("backoff_max = 30.0", "backoff_max = nan", "retry.backoff_max: expected a finite"),
        ("attempts = 4", "attempts = 1000000", "retry.attempts: at most 20"),
        ("[retry]", "[retries]", "unknown config key: retries"),
        ('title = "h1.entry-title"\n', "", "missing config key: selectors.title"),
        ("attempts = 4", "attempts = true", "config key retry.attempts: expected int"),
        ("lesson_path = '^/video/(?P<slug>[^/]+)/$'", "lesson_path = '^/video/('", "invalid regex"),
        ('start_urls = ["https', 'start_urls = ["ftp', "not an http(s) URL"),
        ("audit_listings = 1", "audit_listings = -1", "scope.audit_listings: expected 0 or more"),
        ("audit_listings = 1", 'audit_listings = "a few"', "scope.audit_listings: expected int"),
    ],
)
def test_bad_key_is_named_in_one_line(tmp_path, old, new, message):
    assert old in SHIPPED
    with pytest.raises(ConfigError) as raised:
        load_config(write(tmp_path, SHIPPED.replace(old, new, 1)))
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_invalid_toml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(write(tmp_path, "[site\n"))
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


def test_start_url_on_another_host_becomes_the_scope():
    config = load_config(CONFIG_PATH).with_start_urls(("http://127.0.0.1:8765/video/x/",))
    assert config.host == "127.0.0.1:8765"
    assert config.sitemap_urls() == ("http://127.0.0.1:8765/wp-sitemap.xml",)
