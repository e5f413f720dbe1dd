"""Fault and load tests of the study service: killed workers, signals, an unreachable or
failing storage, runs that diverge or run out of memory, many workers at once.

Workers here are real worker processes (``hpo worker``) whose training is replaced by a fake
that sleeps (:mod:`tests.faults._fake`, started by :mod:`tests.faults._worker`), so each
scenario takes seconds. ``python -m pytest tests/faults -s`` prints the figures observed;
``bench/fault_load_report.py`` runs the load scenarios and prints them too.
"""
