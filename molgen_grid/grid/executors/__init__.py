"""Executors: where and how claimed cells run (base.py: the interface; local.py, slurm.py: the two kinds)."""
