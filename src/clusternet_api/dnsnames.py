"""Kubernetes' name rules (DNS-1123 labels and subdomains, label names and values), in one place for the agent's
flags, the hub's registration checks and the pipeline's template checks.

The patterns are Clusternet's nameFmt/namespaceFmt (pkg/agent/options/constant.go) and apimachinery's
validation, used with `fullmatch`: Go's MatchString is unanchored, and Python's `$` also matches before a
trailing newline, either of which lets a name through that the parent then refuses."""

from __future__ import annotations

import re

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
LABEL_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
"""A label key's name part, or a non-empty label value."""

DNS_LABEL_MAX = 63
DNS_SUBDOMAIN_MAX = 253
LABEL_NAME_MAX = 63


def is_dns_label(text: str, longest: int = DNS_LABEL_MAX) -> bool:
    return len(text) <= longest and DNS_LABEL.fullmatch(text) is not None


def is_dns_subdomain(text: str) -> bool:
    return len(text) <= DNS_SUBDOMAIN_MAX and DNS_SUBDOMAIN.fullmatch(text) is not None


def is_label_name(text: str) -> bool:
    """A label key's name or a label value that is not empty (an empty value is valid; callers allow it)."""
    return len(text) <= LABEL_NAME_MAX and LABEL_NAME.fullmatch(text) is not None
