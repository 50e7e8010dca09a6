"""Local mode: the whole service on one machine, offline, on moto (not shipped to Lambda).

`LocalService` (service.py) is the Python API used by `batchgate local` (cli.py), the e2e tests and
the benchmarks.
"""
from batchgate_local.service import LocalService

__all__ = ["LocalService"]
