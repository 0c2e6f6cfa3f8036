"""Saying once when the parent dropped fields of a status just written: its CRD predates them.

A structural CRD prunes what its schema does not list, without an error. Ours grew fields over time (a HelmRelease's
`status.targets`, a registration request's `rbacDigest`, `tokenIssuedAt`, `sealedTo`); a parent with Clusternet's
CRDs, or with ours from an older version (Helm installs a chart's crds/ but never upgrades them), keeps none of
them, and each then degrades to what the code did before the field existed. That must not be silent: the component
that wrote the status logs one warning per kind and field for its life, saying what is lost and how to get it back.
No extra permission is needed (no CRD is read): the answer to the write itself shows the drop.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)

APPLY_CRDS = ("apply this version's CRDs (crds/, or deploy/hub/01-crds.yaml; Helm installs a chart's crds/ but "
              "never upgrades them)")
_warned: set[tuple[str, str]] = set()


def warn_if_pruned(kind: str, sent: Mapping[str, Any], stored: Mapping[str, Any] | None,
                   lost: Mapping[str, str]) -> list[str]:
    """The fields of `lost` (field -> what goes wrong without it) set in the status `sent` but missing from the
    object the parent answered with (`stored`); each is warned about the first time it is found so."""
    if stored is None:
        return []
    kept = stored.get("status") or {}
    pruned = [f for f in lost if sent.get(f) not in (None, "", [], {}) and kept.get(f) in (None, "", [], {})]
    for field in pruned:
        if (kind, field) not in _warned:
            _warned.add((kind, field))
            log.warning("the parent's %s CRD has no status.%s (Clusternet's CRDs, or ours from an older version): "
                        "%s; %s", kind, field, lost[field], APPLY_CRDS)
    return pruned
