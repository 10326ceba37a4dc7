"""The energy tracker: RAPL's counters read and unwrapped, NVML's counter found by the device's UUID, and the null
figure with its reason where neither can be read. This machine has neither (a VM without powercap, no GPU): the
RAPL zones are a fake sysfs tree and NVML a fake module, both named so; the real readers are asked here too and
must say why they cannot."""
from __future__ import annotations

from pathlib import Path

import pytest

from molgen_grid.bench.trackers.energy import NvmlCounter, RaplCounter, Unavailable, energy_meter

#: RAPL's range on a common Intel package (about 262 kJ).
RANGE = 262143328850


def fake_rapl_zone(root: Path, name: str, label: str, energy_uj: int) -> Path:
    zone = root / name
    zone.mkdir(parents=True)
    (zone / "name").write_text(label + "\n")
    (zone / "max_energy_range_uj").write_text(f"{RANGE}\n")
    (zone / "energy_uj").write_text(f"{energy_uj}\n")
    return zone


class FakeNvml:
    """Stands in for pynvml (no NVIDIA driver here): one GPU by its UUID, a total-energy counter in mJ."""

    def __init__(self, uuid: str, readings: list[int]) -> None:
        self.uuid, self.readings, self.initialised = uuid, readings, False

    def nvmlInit(self) -> None:
        self.initialised = True

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> str:
        if uuid != self.uuid:
            raise RuntimeError("Not Found")
        return "handle"

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: str) -> int:
        assert self.initialised and handle == "handle"
        return self.readings.pop(0)


def test_rapl_sums_the_packages_and_unwraps_a_counter_that_went_round(tmp_path: Path) -> None:
    zero = fake_rapl_zone(tmp_path, "intel-rapl:0", "package-0", RANGE - 1_000_000)
    one = fake_rapl_zone(tmp_path, "intel-rapl:1", "package-1", 5_000_000)
    fake_rapl_zone(tmp_path, "intel-rapl:0:0", "core", 7)  # a sub-zone: inside its package's figure already
    counter = RaplCounter(tmp_path)
    assert counter.source == "rapl package-0,package-1"
    before = counter.read()
    (zero / "energy_uj").write_text("2000000\n")  # wrapped: 1 J to the top, the range's one step, then 2 J
    (one / "energy_uj").write_text("8000000\n")
    assert counter.joules(before, counter.read()) == pytest.approx(1.000001 + 2 + 3)


def test_rapl_zones_missing_or_unreadable_say_so(tmp_path: Path) -> None:
    with pytest.raises(Unavailable, match="no RAPL zones under"):
        RaplCounter(tmp_path)
    zone = fake_rapl_zone(tmp_path, "intel-rapl:0", "package-0", 1)
    (zone / "energy_uj").unlink()
    with pytest.raises(Unavailable, match="RAPL counters unreadable"):
        RaplCounter(tmp_path)


def test_nvml_reads_the_cells_device_by_uuid_in_millijoules() -> None:
    fake = FakeNvml("GPU-1234", [9_000, 10_000, 13_500])  # the first read proves the counter works
    counter = NvmlCounter("GPU-1234", fake)
    assert counter.source == "nvml GPU-1234"
    meter = energy_meter("GPU-1234", nvml=lambda uuid: counter)
    meter.start()
    assert meter.stop() == pytest.approx(3.5) and meter.describe() == {"source": "nvml GPU-1234", "reason": None}
    with pytest.raises(Unavailable, match="NVML: Not Found"):
        NvmlCounter("GPU-other", FakeNvml("GPU-1234", [0]))


def test_no_counter_here_gives_a_null_figure_and_the_reason() -> None:
    """The real readers on this machine (no powercap, no NVIDIA driver): null, and why."""
    if Path("/sys/class/powercap").is_dir():
        pytest.skip("this machine has powercap: the null case is the fakes' above")
    cpu = energy_meter(None)
    cpu.start()
    assert cpu.stop() is None
    assert cpu.describe() == {"source": None, "reason": "energy: unavailable (no RAPL here: no RAPL zones under "
                                                        "/sys/class/powercap)"}
    gpu = energy_meter("GPU-0000")
    assert gpu.counter is None and gpu.reason.startswith("energy: unavailable (no NVML here: NVML: "), gpu.reason
