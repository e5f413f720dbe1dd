"""Workers: pull trials from a study until its budget is spent, alone or several at once.

``hpo.worker.pool.open_worker(name, url)`` opens one worker (:class:`~hpo.worker.loop.Worker`,
``.run()``); ``hpo.worker.local.run_study`` runs a study on this machine with N workers
(what ``hpo run`` does). :mod:`.outcomes`
(how a trial's end is stored), :mod:`.progress` (where a study stands), :mod:`.lookup`
(which storage and study a command means).
"""

__all__ = ["local", "lookup", "loop", "outcomes", "pool", "progress"]
