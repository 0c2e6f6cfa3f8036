"""The harness starts control planes of any version from 1.20 on: flags removed later are left out."""

from __future__ import annotations

from pathlib import Path

from clusternet_testing import controlplane


def fake_binaries(where: Path, version: str) -> Path:
    """A directory whose kube-controller-manager only says its version."""
    where.mkdir()
    binary = where / "kube-controller-manager"
    binary.write_text(f"#!/bin/sh\necho 'Kubernetes {version}'\n")
    binary.chmod(0o755)
    return where


def test_port_zero_only_where_the_flag_exists(tmp_path: Path) -> None:
    old = fake_binaries(tmp_path / "old", "v1.20.2")
    new = fake_binaries(tmp_path / "new", "v1.30.1")
    assert controlplane.insecure_port_off(old) == ["--port=0"]
    assert controlplane.insecure_port_off(new) == []
    assert controlplane.binary_version(new / "kube-controller-manager") == (1, 30)
