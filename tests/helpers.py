"""Helpers for integration tests: the real kubectl, and waiting for eventual consistency."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from clusternet_api.controlplane import ControlPlane

T = TypeVar("T")


def wait_for(check: Callable[[], T], timeout: float = 30.0, interval: float = 0.3, what: str = "condition") -> T:
    """Poll until `check()` is truthy; return its value."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout}s")
        time.sleep(interval)


def kubectl(cp: ControlPlane | Path, *args: str, check: bool = True, input: str | None = None,
            token: str | None = None, server: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real kubectl against a control plane (or a kubeconfig path)."""
    kubeconfig = cp.kubeconfig if isinstance(cp, ControlPlane) else cp
    cmd = ["kubectl", f"--kubeconfig={kubeconfig}"]
    if token:
        cmd.append(f"--token={token}")
    if server:
        cmd.append(f"--server={server}")
    env = dict(os.environ, KUBECTL_COMMAND_HEADERS="false")
    proc = subprocess.run(cmd + list(args), capture_output=True, text=True, input=input, env=env,
                          timeout=60, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc
