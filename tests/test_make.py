"""The Makefile's checks can fail: a target that cannot do its job exits non-zero."""

from __future__ import annotations

import subprocess

from tests.conftest import ROOT


def test_make_browser_fails_when_chromium_cannot_be_installed(tmp_path):
    # A browser path that does not exist, and an apt-get that cannot run (SUDO=false makes
    # every install command fail before it reaches the network).
    done = subprocess.run(
        ["make", "-s", "browser", f"CHROMIUM={tmp_path / 'no-chromium'}", "SUDO=false"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert f"could not install chromium at {tmp_path / 'no-chromium'}" in done.stderr


def test_make_browser_succeeds_when_chromium_is_there(tmp_path):
    present = tmp_path / "chromium"
    present.write_text("#!/bin/sh\n")
    present.chmod(0o755)
    done = subprocess.run(
        ["make", "-s", "browser", f"CHROMIUM={present}", "SUDO=false"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
