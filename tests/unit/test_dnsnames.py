"""Kubernetes' name rules, shared by the agent's flags, the hub's registration checks and template checks."""

from __future__ import annotations

import pytest

from clusternet_agent import options
from clusternet_api import dnsnames
from clusternet_hub import registration


@pytest.mark.parametrize("name", ["a", "cluster-1", "x" * 63])
def test_dns_labels_accepted(name: str) -> None:
    assert dnsnames.is_dns_label(name)


@pytest.mark.parametrize("name", ["", "-a", "a-", "A", "a_b", "a.b", "x" * 64, "abc\n"])
def test_dns_labels_refused(name: str) -> None:
    assert not dnsnames.is_dns_label(name)


def test_a_trailing_newline_no_longer_passes_as_a_name() -> None:
    """Python's `$` matches before a final newline: "edge\\n" passed the agent's anchored patterns and reached a
    parent that refuses it. fullmatch does not let it through."""
    with pytest.raises(options.OptionsError):
        options.check_cluster_namespace("edge\n")
    with pytest.raises(options.OptionsError):
        options.check_label("team\n", "a")
    crr = {"metadata": {"name": "clusternet-" + "0" * 8 + "-0000-0000-0000-" + "0" * 12},
           "spec": {"clusterId": "0" * 8 + "-0000-0000-0000-" + "0" * 12, "clusterNamespace": "edge\n"}}
    assert "not a valid namespace name" in (registration.validate(crr, allow_unsealed=True) or "")


def test_subdomains_and_label_names() -> None:
    assert dnsnames.is_dns_subdomain("example.com") and not dnsnames.is_dns_subdomain("Example.com")
    assert not dnsnames.is_dns_subdomain("a" * 254)
    assert dnsnames.is_label_name("Team_A.b-1") and not dnsnames.is_label_name("_a")
    assert not dnsnames.is_label_name("") and not dnsnames.is_label_name("x" * 64)
