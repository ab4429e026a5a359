"""The replay tools archivists use, installed by the tests themselves so CI needs nothing by hand:
pywb from the Python package index in an environment of its own (its pins are not ours), and
ReplayWeb.page's own files from the npm registry. Both are cached in ``.cache/replay-tools``
(outside git) and built once per machine."""

from __future__ import annotations

import contextlib
import fcntl
import mimetypes
import os
import re
import shutil
import subprocess
import tarfile
import threading
import venv
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("MICROPAUSE_TOOL_CACHE", ROOT / ".cache" / "replay-tools"))
PYWB = "pywb==2.10.0"
REPLAYWEBPAGE = "replaywebpage@2.4.6"
SERVER_SCRIPT = Path(__file__).with_name("pywb_server.py")
# A timestamp after every capture: pywb answers with the closest one, the latest.
LATEST = "29991231235959"


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    """One installer at a time, across processes sharing the cache."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def pywb_bin() -> Path:
    """The bin/ of a virtual environment with pywb in it, made on first use."""
    home = CACHE / PYWB.replace("==", "-")
    with _locked("pywb"):
        if not (home / ".installed").exists():
            shutil.rmtree(home, ignore_errors=True)
            venv.create(home, with_pip=True)
            subprocess.run(
                [home / "bin" / "python", "-m", "pip", "install", "--quiet", PYWB],
                check=True,
                timeout=900,
            )
            (home / ".installed").touch()
    return home / "bin"


def replaywebpage_dir() -> Path:
    """ReplayWeb.page's package (index.html's ui.js and the service worker sw.js, with its
    licence), unpacked from the tarball `npm pack` fetches from the registry."""
    home = CACHE / REPLAYWEBPAGE.replace("@", "-")
    with _locked("replaywebpage"):
        if not (home / ".installed").exists():
            shutil.rmtree(home, ignore_errors=True)
            home.mkdir(parents=True)
            npm = shutil.which("npm")
            if npm is None:
                raise RuntimeError("npm is needed to fetch ReplayWeb.page (apt-get install npm)")
            packed = subprocess.run(
                [npm, "pack", "--silent", REPLAYWEBPAGE],
                cwd=home,
                capture_output=True,
                text=True,
                check=True,
                timeout=600,
            )
            tarball = home / packed.stdout.strip().splitlines()[-1]
            with tarfile.open(tarball) as tar:
                tar.extractall(home, filter="data")
            tarball.unlink()
            (home / ".installed").touch()
    return home / "package"


class Pywb:
    """pywb's wayback app over collections made with its own `wb-manager`, on 127.0.0.1."""

    def __init__(self, root: Path):
        self.root = root
        self.bin = pywb_bin()
        self.url = ""
        self._process: subprocess.Popen | None = None

    def add(self, collection: str, wacz: Path) -> None:
        """What docs/research.md tells a reader to type."""
        if not (self.root / "collections" / collection).exists():
            self._manager("init", collection)
        self._manager("add", "--unpack-wacz", collection, str(wacz))

    def _manager(self, *args: str) -> None:
        done = subprocess.run(
            [self.bin / "wb-manager", *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr

    def __enter__(self) -> Pywb:
        self._process = subprocess.Popen(
            [self.bin / "python", str(SERVER_SCRIPT), str(self.root)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for line in self._process.stdout:
            if line.startswith("listening on "):
                self.url = f"http://127.0.0.1:{line.split()[-1]}"
                break
        if not self.url:
            self.__exit__()
            raise AssertionError("pywb did not start")
        # Whatever else it prints is read and dropped, so a full pipe never stalls it.
        threading.Thread(target=self._process.stdout.read, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=30)

    def get(self, collection: str, url: str, timestamp: str = LATEST, mode: str = "id_"):
        """The capture of ``url`` closest to ``timestamp`` (by default the latest), as pywb
        replays it: ``id_`` is the page as captured, without pywb's rewriting."""
        target = f"{self.url}/{collection}/{timestamp}{mode}/{url}"
        return httpx.get(target, timeout=60, follow_redirects=True)


class ReplayWebPage:
    """ReplayWeb.page's own files and a WACZ served from 127.0.0.1 (a free port), with the
    byte ranges it reads the WACZ by: ``app_url`` opens the app on the WACZ."""

    def __init__(self, wacz: Path):
        package = replaywebpage_dir()
        self.files = {
            "/index.html": package / "index.html",
            "/ui.js": package / "ui.js",
            "/sw.js": package / "sw.js",
            "/captures.wacz": wacz,
        }
        self._server: ThreadingHTTPServer | None = None
        self.url = ""

    def __enter__(self) -> ReplayWebPage:
        files = self.files

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_HEAD(self) -> None:
                self._serve(head=True)

            def do_GET(self) -> None:
                self._serve(head=False)

            def _serve(self, *, head: bool) -> None:
                path = files.get(self.path.split("?", 1)[0])
                if path is None:
                    self.send_error(404)
                    return
                data = path.read_bytes()
                start, end = 0, len(data) - 1
                wanted = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", ""))
                if wanted and (wanted[1] or wanted[2]):
                    if wanted[1]:
                        start = int(wanted[1])
                        end = min(int(wanted[2]), end) if wanted[2] else end
                    else:  # the last N bytes
                        start = max(0, len(data) - int(wanted[2]))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
                else:
                    self.send_response(200)
                kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
                self.send_header("Content-Type", kind)
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(end - start + 1))
                self.end_headers()
                if not head:
                    self.wfile.write(data[start : end + 1])

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        return self

    def __exit__(self, *exc) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def app_url(self) -> str:
        return f"{self.url}/index.html?source={self.url}/captures.wacz#view=pages"
