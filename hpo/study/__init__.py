"""Studies: create once, load in many workers, and keep the trial budget exact.

``hpo.study.create.create_study(cfg, storage)`` creates (or adopts) a study and enqueues its
baselines; ``open_study`` loads it in a worker. :mod:`.budget` (which trials count),
:mod:`.requeue` (failed trials re-queued exactly once), :mod:`.twins` (paired baselines).
"""

__all__ = ["budget", "create", "requeue", "twins"]
