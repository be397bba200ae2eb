"""Writes made by any process that shares the store, applied to this one's memory.

``POST``/``DELETE /v1/edges``, ``POST /v1/users`` and ``POST /v1/items`` reach one worker of
``recfunnel serve --workers N``, but every worker holds what they change in memory: the live
social graph (friendships, requests, **blocks**, profiles of new members) and the served
model (items a two-tower model embeds from their attributes). The store logs every such
write, and every user deletion, in the same transaction as the write
(:meth:`~recfunnel.core.store.Store.changes_since`); a :class:`ChangeFollower` reads that
log from where it last stopped and hands each new entry, in log order, to ``apply``.

**One code path.** The worker that received a write applies it the same way as the others:
the route writes to the store, then follows the log (its own entry included), so no write is
applied twice or missed, and concurrent writes through different workers are applied in the
store's commit order everywhere (an edge added through one worker and removed through
another ends removed in both). Applying an entry is idempotent (edges and profiles are set to
the logged value, ``add_items`` skips items the model knows), so the overlap between reading
the tables at start and the position caught up to before that is harmless.

**Bounded log.** The store keeps only the newest ``CHANGES_KEEP`` (1,000) entries, and logs a
bulk write (more than ``CHANGE_ROWS_MAX`` rows, the API's largest batch) as a ``reset`` entry
without rows. A follower that fell behind the window or meets a ``reset`` calls ``rebuild``:
it moves to the end of the log first, then rebuilds from the tables, so entries committed
meanwhile are applied (again) afterwards. A rebuild re-reads the whole graph (seconds on a
large one), so the app also follows the log from a thread every second: only more than 1,000
writes within a second make a worker rebuild.

The app follows before every request that uses this state (recommendations, similar items,
friend suggestions, writes): cheap when there is nothing new, one indexed read. User deletions are
in the same log, so that read also tells when to follow the deletion log
(``service/deletions.py``): the recommendations route makes one read, not two.

>>> from recfunnel.data.store import open_store
>>> store = open_store("sqlite:///:memory:")
>>> seen = []
>>> follower = ChangeFollower(store, apply=lambda c: seen.append((c.kind, c.rows)),
...                           rebuild=lambda: seen.append("rebuilt"))
>>> follower.catch_up()
>>> _ = store.add_edges([{"src_user_id": "ana", "dst_user_id": "bo", "kind": "block"}])
>>> follower.follow(); seen
[('edges', [['ana', 'bo', None, 'block']])]
>>> follower.follow(); len(seen)  # each entry once
1
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from recfunnel.core.store import Change, Store

log = logging.getLogger("recfunnel.service")

#: Entries read per store call while following.
BATCH = 1000


class ChangeFollower:
    """Follows the store's change log for one process (thread-safe).

    ``apply(change)`` applies one entry to the process's memory; ``rebuild()`` re-reads that
    state from the store's tables (the log no longer holds everything since the last read).
    """

    def __init__(
        self, store: Store, apply: Callable[[Change], None], rebuild: Callable[[], None]
    ) -> None:
        self.store = store
        self.apply = apply
        self.rebuild = rebuild
        self.position = 0
        self._lock = threading.RLock()

    def catch_up(self) -> None:
        """Move to the end of the log without applying anything (before the state is read
        from the tables); later :meth:`follow` calls read on from here."""
        with self._lock:
            while True:
                found = self.store.changes_since(self.position, limit=BATCH)
                if not found.entries:
                    return
                self.position = found.position

    def follow(self) -> None:
        """Apply the entries logged since the last call, in log order. Cheap when there is
        nothing new (one indexed read)."""
        with self._lock:
            while True:
                found = self.store.changes_since(self.position, limit=BATCH)
                if not found.entries:
                    return
                if not found.complete or any(c.kind == "reset" for c in found.entries):
                    log.info("change log: fell behind or bulk write, rebuilding from the store")
                    self.catch_up()
                    self.rebuild()
                    return
                for change in found.entries:
                    self.apply(change)
                    # Per entry: an entry that fails is not skipped, it is applied next time.
                    self.position = change.seq


__all__ = ["ChangeFollower"]
