"""What a released Description had deployed, carried over to the one written again under its name.

A Description deleted while its Subscription still wants it (the garbage collector, a hand, or a change undone
while its cluster was silent: review findings F6 and F7) is released without touching the child, and the hub
writes it again under the same name, which adopts the child's objects by their owned-by mark. The new one starts
with no `status.manifestStatuses`, and that list is the only record of what was deployed: the applier prunes what
it lists and the new raw does not. So a feed removed in the same window (the fifth audit: an affinity typo undone
and a Service feed dropped in one patch while the agents were down) left its object in the child for good, marked
as the live Description's, listed by nothing.

The deployer that releases a Description is the one that deploys its successor (the hub in Push mode, the agent in
Pull mode), so it keeps the released one's list here, in memory, and hands it to the first apply of a Description
of that name with another uid and no list of its own; the applier then prunes what that one no longer lists,
still only objects carrying the Description's own mark. Kept until used, or until the Description is cleaned up
for real; at most MAX_RECORDS (oldest dropped). Neither deployer lets a Description go while its cluster is silent
(the hub waits for its return as the agent must), so the record has to last only the seconds until the successor's
first apply; a deployer restarted in those seconds forgets it, and such an object stays, marked, as before.
Clusternet has no such release (it cleans up and deploys again, new UIDs).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from clusternet_api.apiresource import key_of

Obj = dict[str, Any]
Key = tuple[str, str]

MAX_RECORDS = 10_000
"""A released Description is rare (one per GC accident or undone change per cluster); this bounds a pathological
case at a few MB."""


def _statuses(desc: Obj) -> list[Obj]:
    return list((desc.get("status") or {}).get("manifestStatuses") or [])


class CarriedOver:
    """One deployer's records of released Descriptions: namespace/name -> (uid of the released one, its list)."""

    def __init__(self, max_records: int = MAX_RECORDS) -> None:
        self.max_records = max_records
        self._records: OrderedDict[Key, tuple[str, list[Obj]]] = OrderedDict()

    def keep(self, desc: Obj) -> None:
        """`desc` is being released without touching the child: remember what it deployed."""
        statuses = _statuses(desc)
        if not statuses:
            return
        key = key_of(desc)
        self._records.pop(key, None)
        self._records[key] = (str(desc["metadata"].get("uid") or ""), statuses)
        while len(self._records) > self.max_records:
            self._records.popitem(last=False)

    def previous(self, desc: Obj) -> list[Obj]:
        """What to count as deployed before this apply of `desc`: its own list, or, for the successor of a released
        Description that has none yet, the released one's."""
        own = _statuses(desc)
        record = self._records.get(key_of(desc))
        if own or record is None:
            if own:
                self._records.pop(key_of(desc), None)  # its own list has taken over
            return own
        uid, statuses = record
        return [] if uid == str(desc["metadata"].get("uid") or "") else statuses

    def forget(self, desc: Obj) -> None:
        """`desc` was cleaned up for real: nothing of it is carried over."""
        self._records.pop(key_of(desc), None)
