"""Joules of the timed passes, read from the hardware's own energy counters, or null saying why.

On an NVIDIA GPU: NVML's total-energy counter of the cell's device (millijoules since the driver loaded; Volta
and later), found by the device's UUID because NVML numbers the machine's GPUs, not the ones
CUDA_VISIBLE_DEVICES shows. On a CPU: RAPL's package counters under /sys/class/powercap (microjoules), which wrap
at `max_energy_range_uj`. Where neither can be read (a VM, a container without powercap, a GPU without the
counter) the figure is null and the reason is kept: a TDP-based estimate would look like a measurement and is
never made.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

POWERCAP = Path("/sys/class/powercap")


class Unavailable(Exception):
    """No counter can be read here; its message says why."""


class Counter(Protocol):
    #: What is measured, in words (`nvml GPU-…`, `rapl package-0,package-1`).
    source: str

    def read(self) -> list[int]: ...

    def joules(self, before: list[int], after: list[int]) -> float: ...


class RaplCounter:
    """The CPU packages' RAPL counters (a top-level `intel-rapl:N` zone each; AMD's are named so too)."""

    def __init__(self, root: Path = POWERCAP) -> None:
        self.zones = sorted(z for z in root.glob("intel-rapl:*") if z.name.count(":") == 1)
        if not self.zones:
            raise Unavailable(f"no RAPL zones under {root}")
        try:
            self.ranges = [int((z / "max_energy_range_uj").read_text()) for z in self.zones]
            self.read()
        except (OSError, ValueError) as exc:
            raise Unavailable(f"RAPL counters unreadable ({exc})") from None
        self.source = "rapl " + ",".join((z / "name").read_text().strip() if (z / "name").exists() else z.name
                                         for z in self.zones)

    def read(self) -> list[int]:
        return [int((z / "energy_uj").read_text()) for z in self.zones]

    def joules(self, before: list[int], after: list[int]) -> float:
        # A counter that wrapped during the pass reads less than before: it went round once (passes are short).
        return sum((a - b) % (top + 1) for b, a, top in zip(before, after, self.ranges)) / 1e6


class NvmlCounter:
    """NVML's total-energy counter of one CUDA device."""

    def __init__(self, uuid: str, nvml: Any = None) -> None:
        try:
            if nvml is None:
                import pynvml as nvml
            nvml.nvmlInit()
            self.handle = nvml.nvmlDeviceGetHandleByUUID(uuid)
            self.nvml = nvml
            self.read()
        except ImportError:
            raise Unavailable("nvidia-ml-py is not installed") from None
        except Exception as exc:  # NVMLError and its many subclasses: no driver, no counter on this GPU
            raise Unavailable(f"NVML: {exc}") from None
        self.source = f"nvml {uuid}"

    def read(self) -> list[int]:
        return [int(self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle))]

    def joules(self, before: list[int], after: list[int]) -> float:
        return (after[0] - before[0]) / 1e3


@dataclass
class EnergyMeter:
    """Brackets each timed pass: `start()` before it, `stop()` after it (the device synchronised) gives its joules,
    None without a counter."""

    counter: Counter | None
    #: Why there is no counter (None when there is one).
    reason: str | None
    _before: list[int] | None = None

    def start(self) -> None:
        self._before = self.counter.read() if self.counter else None

    def stop(self) -> float | None:
        if self.counter is None or self._before is None:
            return None
        return self.counter.joules(self._before, self.counter.read())

    def describe(self) -> dict[str, str | None]:
        return {"source": self.counter.source if self.counter else None, "reason": self.reason}


def energy_meter(cuda_uuid: str | None, rapl: Callable[[], Counter] = RaplCounter,
                 nvml: Callable[[str], Counter] = NvmlCounter) -> EnergyMeter:
    """The meter of a cell's device: NVML for a CUDA device (by its UUID), RAPL for the CPU."""
    try:
        return EnergyMeter(nvml(cuda_uuid) if cuda_uuid else rapl(), None)
    except Unavailable as exc:
        where = "NVML" if cuda_uuid else "RAPL"
        return EnergyMeter(None, f"energy: unavailable (no {where} here: {exc})")
