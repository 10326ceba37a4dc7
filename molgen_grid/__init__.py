"""molgen_grid: grids of inference-optimization experiments for conformer generation, resumable, on Slurm."""

__version__ = "0.1.0"
