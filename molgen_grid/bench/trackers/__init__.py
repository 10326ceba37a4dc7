"""What a cell measures beside its timed figures (energy), kept apart from the study's axes as optimum-benchmark
keeps its trackers."""
