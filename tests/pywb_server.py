"""Serve the pywb collections of a directory on 127.0.0.1, on a free port, and print the port
(after notes pywb prints on stdout itself): run by tests/replay_tools.py with pywb's own
Python (its environment, not ours)."""

from gevent import monkey

monkey.patch_all()

import os  # noqa: E402
import sys  # noqa: E402

from gevent.pywsgi import WSGIServer  # noqa: E402
from pywb.apps.frontendapp import FrontEndApp  # noqa: E402

os.chdir(sys.argv[1])
server = WSGIServer(("127.0.0.1", 0), FrontEndApp(), log=None)
server.start()
print(f"listening on {server.server_port}", flush=True)
server.serve_forever()
