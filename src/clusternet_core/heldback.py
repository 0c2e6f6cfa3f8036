"""A cluster whose render has failed overrides keeps the Description it has, instead of getting that render.

An override that stops applying (a JSON patch `replace` on a path the template no longer has) is skipped as a
whole for its object (overrides.py). When that override also moved or renamed the object (a `replace` of
`/metadata/namespace`), the render put the object back at the template's place: the deployer applied it there
and pruned the one at the overridden place, which it owns and lists in the status. Production moved to a
namespace it was never meant to run in and the old one was deleted, under a status that said Success. The same
for Helm: a failed `Helm` override reverts its values (an upgrade that can remove chart resources), a failed
`overrideChart` reverts `spec.version` (a downgrade).

So the planner (plan.py) does not write a Description rendered with failed overrides: the cached one stays as
it is (and records its old inputs hash, so each reconcile renders again until the overrides apply), and the
Subscription's Ready condition says RenderFailed, naming the override and the kept Description. A cluster
that has no Description yet gets none either: whatever the failed override was meant to do (its namespace, its
name, its values), deploying without it could put an object where nothing should run, and one rule for both
cases is easier to reason about. Like a Subscription's refusals (refusals.py), but for one cluster's render.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from clusternet_core.overrides import OverrideError

Obj = Mapping[str, Any]


def note(namespace: str, name: str, existing: Obj | None) -> str:
    """The sentence for the Subscription's status, after the override errors themselves."""
    if existing is None:
        return f"Description {namespace}/{name} is not created until its overrides apply"
    return (f"Description {namespace}/{name} keeps what it deploys until its overrides apply (without them objects "
            "could move, be renamed or revert, and the deployed ones be removed)")


def unreported(ready: Obj, errors: Iterable[OverrideError]) -> list[OverrideError]:
    """The errors the Subscription's Ready condition does not name yet: with no Description written, nothing
    else records which errors were announced, and each resync would post the same OverrideFailed events again.
    A Description written with them (plan.plan_cluster) is checked the same way: its errors annotation may be
    new while Ready already names them, after a forced reconcile held it back and reported them."""
    message = str(ready.get("message") or "")
    return [e for e in errors if e.message not in message]
