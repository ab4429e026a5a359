"""A damaged capture file costs only what it holds: `export` leaves out what it cannot read
(random bytes, a file cut short, a gzip bomb, a file gone), names it in its output and the
manifest, and still writes the snapshot, within a bounded amount of memory."""

from __future__ import annotations

import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import zipfile
import zlib

import pytest

from pipeline.archive import Layout
from pipeline.export import export_snapshot
from pipeline.run import crawl_into_archive
from tests.conftest import ROOT, copy_with_captures, local_config
from tests.site.server import FixtureSite

# Far below the 2.8 GB a gzip bomb cost before decompression was bounded, far above what an
# export of the fixture site needs (~100 MB).
MEMORY_BOUND = 400 << 20


@pytest.fixture(scope="module")
def three_runs(tmp_path_factory):
    """Run 1 crawls, run 2 sees an edited lesson, run 3 sees nothing new."""
    db_path = tmp_path_factory.mktemp("three") / "archive" / "micropause.db"
    with FixtureSite() as site:
        config = local_config(site)
        crawl_into_archive(config, db_path)
        site.edit("the-heavy-arms", description=["Edited in run 2."])
        crawl_into_archive(config, db_path)
        crawl_into_archive(config, db_path)
    return db_path


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    """2 MB that inflate to 2 GB: one gzip member of zeros."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.gz"
    deflate = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    with open(path, "wb") as f:
        for _ in range(2048):
            f.write(deflate.compress(zeros))
        f.write(deflate.flush())
    return path


def damage(path, kind: str, bomb) -> None:
    if kind == "random bytes":
        path.write_bytes(os.urandom(path.stat().st_size))
    elif kind == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    elif kind == "gzip bomb":
        shutil.copyfile(bomb, path)
    elif kind == "missing":
        path.unlink()


def export_in_child(db_path, out) -> tuple[subprocess.CompletedProcess, int]:
    """`micropause export` in a process of its own, under an address-space limit so that a
    runaway decompression fails it instead of the machine; returns its peak RSS too."""
    script = (
        "import resource, sys\n"
        "from pipeline.cli import main\n"
        "try:\n"
        "    main(sys.argv[1:], standalone_mode=False)\n"
        "finally:\n"
        "    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "    print(f'peak-rss-kib {peak}', file=sys.stderr)\n"
    )

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))

    done = subprocess.run(
        [sys.executable, "-c", script, "export", "--db", str(db_path), "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        preexec_fn=limit,
    )
    peak = next(
        int(line.split()[-1]) * 1024
        for line in done.stderr.splitlines()
        if line.startswith("peak-rss-kib")
    )
    return done, peak


@pytest.mark.parametrize("kind", ["random bytes", "truncated", "gzip bomb", "missing"])
def test_export_leaves_out_a_damaged_capture_file_names_it_and_still_writes(
    three_runs, tmp_path, bomb, kind
):
    db_path = copy_with_captures(three_runs, tmp_path)
    damage(Layout(db_path).captures / "2.warc.gz", kind, bomb)

    done, peak = export_in_child(db_path, tmp_path / "exports")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert peak < MEMORY_BOUND, f"{peak / 2**20:.0f} MiB"
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("capture file")]
    assert line.startswith("capture file 2.warc.gz left out of captures.wacz: ")
    assert ("missing" in line) == (kind == "missing")

    latest = tmp_path / "exports" / "latest"
    manifest = json.loads((latest / "manifest.json").read_bytes())
    left_out = manifest["captures"]["left_out"]
    assert list(left_out) == ["2.warc.gz"]
    assert "1.warc.gz" in manifest["captures"]["from"]
    assert "3.warc.gz" in manifest["captures"]["from"]
    # What the other runs hold still replays: every lesson page is listed (the edited one at
    # run 1's capture: run 3's revisit confirmed run 2's response, which is gone).
    with zipfile.ZipFile(latest / "captures.wacz") as wacz:
        pages = [json.loads(x) for x in wacz.read("pages/pages.jsonl").splitlines()[1:]]
    with sqlite3.connect(db_path) as db:
        (lessons,) = db.execute("SELECT count(*) FROM lessons").fetchone()
    db.close()
    assert len(pages) == lessons


def wacz_warcs(snapshot_path) -> list[str]:
    with zipfile.ZipFile(snapshot_path / "captures.wacz") as wacz:
        return sorted(n for n in wacz.namelist() if n.startswith("archive/"))


def test_every_capture_packs_each_readable_capture_file_whole(three_runs, tmp_path):
    latest = export_snapshot(three_runs, tmp_path / "latest")
    assert wacz_warcs(latest.path) == ["archive/run3-latest.warc.gz"]
    every = export_snapshot(three_runs, tmp_path / "every", every_capture=True)
    assert wacz_warcs(every.path) == [f"archive/{n}.warc.gz" for n in (1, 2, 3)]
    captures = Layout(three_runs).captures
    with zipfile.ZipFile(every.path / "captures.wacz") as wacz:
        for n in (1, 2, 3):
            assert wacz.read(f"archive/{n}.warc.gz") == (captures / f"{n}.warc.gz").read_bytes()
    manifest = json.loads((every.path / "manifest.json").read_bytes())
    assert manifest["captures"]["from"] == ["1.warc.gz", "2.warc.gz", "3.warc.gz"]
    assert manifest["captures"]["left_out"] == {}


def test_every_capture_leaves_out_a_damaged_file_whole(three_runs, tmp_path):
    db_path = copy_with_captures(three_runs, tmp_path)
    warc = Layout(db_path).captures / "2.warc.gz"
    warc.write_bytes(warc.read_bytes()[: warc.stat().st_size // 2])
    every = export_snapshot(db_path, tmp_path / "every", every_capture=True)
    assert wacz_warcs(every.path) == ["archive/1.warc.gz", "archive/3.warc.gz"]
    assert list(every.captures_left_out) == ["2.warc.gz"]
    assert "left out whole" in every.captures_left_out["2.warc.gz"]
