"""User deletions made by any process that shares the store, applied in this one.

``DELETE /v1/users/{id}`` reaches one process (one worker of ``recfunnel serve --workers N``),
but every worker holds something about the user in memory: the served model's rows (a model
trained before the deletion still knows them), the live social graph, and feature-log rows
buffered for the next flush. The store logs every deletion in the same transaction that
deletes the user's rows (:meth:`~recfunnel.core.store.Store.deletions_since`); a
:class:`DeletionFollower` reads that log from where it last stopped and applies what is new:

* ``forget(ids)`` at once (the app's callback: the model's and the graph's part). The app
  follows before every request that uses them (recommendations, friend suggestions, edge and
  user writes), so an acknowledged deletion is in force in every worker from its next such
  request, not after a delay. Those requests read the store's change log
  (``service/changes.py``), which holds the deletions too, and follow this log when a deletion
  appears there: one read per request, and a deletion is applied in order with the edge and
  user writes around it;
* the users' feature-log rows are **queued**: deleting them rewrites log files, too slow for a
  request thread, so the app's feature-log thread runs :meth:`DeletionFollower.delete_logged_rows`
  (it is woken when something is queued, and also follows the log every second and around
  each flush, so a worker without traffic does not keep rows for a deleted user either). The
  process that received the ``DELETE`` deletes them before it answers.

Why no buffered row of a deleted user survives: a flush happens only in a request thread that
followed the log when it started, or in the feature-log thread, which follows the log after
every flush and deletes what it finds from the files, its own included. Rows logged after a
process has followed a deletion cannot name the user: the funnel serves a forgotten user as a
stranger. Feature-log deletions of different processes take an exclusive lock
(``<feature_log_dir>/.delete.lock``, ``flock``) so that two rewrites of one file cannot undo
each other.

>>> from recfunnel.data.store import open_store
>>> store = open_store("sqlite:///:memory:")
>>> forgotten = []
>>> follower = DeletionFollower(store, forget=forgotten.extend)
>>> follower.catch_up()
[]
>>> _ = store.delete_users(["ana"])
>>> follower.follow(); forgotten
['ana']
>>> follower.follow(); forgotten  # each deletion once
['ana']
"""

from __future__ import annotations

import fcntl
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from recfunnel.core.store import Store

if TYPE_CHECKING:
    from recfunnel.pipeline.feature_log import FeatureLogger

log = logging.getLogger("recfunnel.service")

#: The lock file that serialises feature-log deletions between processes.
DELETE_LOCK = ".delete.lock"


class DeletionFollower:
    """Follows the store's deletion log for one process (thread-safe).

    ``forget(ids)`` drops what the process holds in memory about the users; ``feature_log``
    (optional) is the process's feature logger, whose rows for deleted users
    :meth:`delete_logged_rows` deletes.
    """

    def __init__(
        self,
        store: Store,
        forget: Callable[[list[str]], None],
        feature_log: FeatureLogger | None = None,
    ) -> None:
        self.store = store
        self.forget = forget
        self.feature_log = feature_log
        self.position = 0
        #: Set when feature-log rows are queued for deletion (the feature-log thread waits on it).
        self.wake = threading.Event()
        self._lock = threading.Lock()
        self._queued: list[str] = []
        self._log_lock = threading.Lock()

    def catch_up(self) -> list[str]:
        """Every user deleted so far, without applying anything (at start: what the store
        holds is already without them, and a model loaded later is told by the app); later
        :meth:`follow` calls read on from here."""
        with self._lock:
            found = self.store.deletions_since(self.position)
            self.position = found.position
        return found.user_ids

    def follow(self) -> None:
        """Apply the deletions logged since the last call: ``forget`` now, feature-log rows
        queued. Cheap when there is nothing new (one indexed read)."""
        with self._lock:
            found = self.store.deletions_since(self.position)
            if not found.user_ids:
                return
            ids = list(dict.fromkeys(found.user_ids))
            self.forget(ids)
            self.position = found.position
            if self.feature_log is not None:
                self._queued.extend(ids)
                self.wake.set()

    def delete_logged_rows(self) -> None:
        """Delete the queued users' rows from the feature log (buffer and files)."""
        if self.feature_log is None:
            return
        with self._log_lock:
            with self._lock:
                ids, self._queued = list(dict.fromkeys(self._queued)), []
            if not ids:
                return
            try:
                with exclusive(Path(self.feature_log.root)):
                    for user_id in ids:
                        self.feature_log.delete_user(user_id)
            except BaseException:
                with self._lock:  # not done: try again next time
                    self._queued[:0] = ids
                raise
        log.info("deleted the feature-log rows of %d deleted user(s)", len(ids))


@contextmanager
def exclusive(root: Path) -> Iterator[None]:
    """Hold ``root/.delete.lock`` exclusively (between processes and between threads: each
    holder opens the file anew, and ``flock`` locks belong to one open file)."""
    root.mkdir(parents=True, exist_ok=True)
    with (root / DELETE_LOCK).open("a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


__all__ = ["DeletionFollower", "exclusive"]
