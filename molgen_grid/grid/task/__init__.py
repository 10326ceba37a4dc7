"""What a cell runs: the task contract (contract.py) and the one seam behind it (base.py), with its three kinds.

A cell runs a Python callable (`grid.task`, function.py), a command (`grid.command`, command.py) or a Hydra
app's own function through `run_job` (hydra_app.py). Each kind composes the cell's config in the cell's own
process, says what its code fingerprint covers and hands back the result as figures; the worker (worker.py) is
the one cell process for all three: lock, superseded check, retire the previous outcome, run, record.
"""
from molgen_grid.grid.task.contract import (OK, REQUIRED_KEYS, SUMMARY_KEYS, UNSUPPORTED, CellHandle, ResultError,
                                            read_result)

__all__ = ["OK", "REQUIRED_KEYS", "SUMMARY_KEYS", "UNSUPPORTED", "CellHandle", "ResultError", "read_result"]
