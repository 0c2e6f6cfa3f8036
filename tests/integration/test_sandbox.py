"""`make sandbox` end to end: the product is shown working, and SIGTERM leaves no process behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clusternet_testing.controlplane import REPO_ROOT

pytestmark = pytest.mark.integration


def test_sandbox_shows_the_product_and_stops_everything_on_sigterm(tmp_path: Path) -> None:
    workdir = tmp_path / "sandbox"
    out_path = tmp_path / "sandbox.out"
    with open(out_path, "wb") as out:
        proc = subprocess.Popen([sys.executable, str(REPO_ROOT / "hack" / "sandbox.py"), "--dir", str(workdir)],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120  # the budget once binaries are cached
        while "the sandbox is up" not in out_path.read_text():
            assert proc.poll() is None, out_path.read_text()
            assert time.monotonic() < deadline, out_path.read_text()
            time.sleep(0.5)
        text = out_path.read_text()
        for expected in ("$ kubectl get mcls -A", "child1", "child2", "$ kubectl clusternet get subs -A", "app-demo",
                         "$ kubectl get desc -A", "Success", "my-nginx"):
            assert expected in text, expected
        assert text.count("Generic    Success") == 2  # the walkthrough reached both children
        assert text.count("Helm       Success") == 2 and "$ kubectl get hr -A" in text  # its chart too
        assert text.count(" deployed ") >= 2 and "Found" in text, text
        # what a user needs to go on by hand: the plugin on PATH, and where the chart comes from
        assert f"export PATH={Path(sys.executable).parent}:$PATH" in text
        assert "  charts:  http://127.0.0.1:" in text

        os.kill(int((workdir / "sandbox.pid").read_text()), signal.SIGTERM)  # what `make sandbox-down` does
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    left = subprocess.run(["pgrep", "-f", str(workdir)], capture_output=True, text=True, check=False).stdout
    assert left == "", f"processes left running: {left}"
    with pytest.raises(OSError), socket.create_connection(("127.1.0.20", 443), timeout=2):
        pass  # the hub's port is free again
    assert not (workdir / "sandbox.pid").exists()
