"""deletionPolicy Delete: a finalizer holds the EnvironmentIsolation until its policies are gone.

The operator keeps the finalizer itself (Kopf writes nothing: see handlers.py): present
while deletionPolicy is Delete, removed when that changes, and removed after deletion
started once no policy labelled with the isolation is left. Orphan needs none, so a CR
with Orphan can always be deleted, operator running or not. Only the leader gets here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import structlog

from envisolation.runtime.api import ApiError, FinalizerApi
from envisolation.spec import constants as c
from envisolation.spec.model import IsolationRecord

log = structlog.get_logger("envisolation.finalizers")
FINALIZER = c.FINALIZER


class Finalizers:
    def __init__(self, api: FinalizerApi) -> None:
        self._api = api
        # name -> the resourceVersion we last patched from: not again until it moves
        self._sent: dict[str, str] = {}

    async def reconcile(
        self, records: Iterable[IsolationRecord], remaining: Callable[[str], int]
    ) -> None:
        for rec in records:
            have = FINALIZER in rec.finalizers
            if rec.deleting:
                # Finalizers cannot be added once deletion started; ours goes when the
                # policies have gone.
                want = have and rec.deletion_policy == "Delete" and remaining(rec.name) > 0
            else:
                want = rec.deletion_policy == "Delete"
            if want == have or self._sent.get(rec.name) == rec.resource_version:
                continue
            keep = [f for f in rec.finalizers if f != FINALIZER]
            new = [*keep, FINALIZER] if want else keep
            self._sent[rec.name] = rec.resource_version
            try:
                await self._api.set_finalizers(rec.name, new, rec.resource_version)
            except ApiError as e:
                log.info("finalizer not changed; trying again on the next change",
                         isolation=rec.name, error=str(e))  # fmt: skip
                if e.transient:
                    self._sent.pop(rec.name, None)
                continue
            log.info("finalizer added" if want else "finalizer removed", isolation=rec.name)
