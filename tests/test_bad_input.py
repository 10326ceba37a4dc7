"""Bad input: one clear line on stderr, a non-zero exit, and nothing in results/ touched.

Each refusal is asked in the test's process (`cli_here`: the same exit status and output, no interpreter to
start); the exit path itself, through a real process of each front door, is kept by one case each
(`test_bad_input_ends_a_real_process_with_status_2`)."""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import FAST, Tool


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()} if root.exists() else {}


def refuse(tool: Tool, *args: str, match: str, hydra: bool = False, process: bool = False) -> None:
    before = snapshot(tool.results)
    if process:
        done = (tool.hydra if hydra else tool.cli)(*args, check=False)
    else:
        done = (tool.hydra_here if hydra else tool.cli_here)(*args, check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("molgen-grid: error: ") and match in lines[0], lines[0]
    assert snapshot(tool.results) == before


@pytest.mark.parametrize("args, match", [
    (["attention=flashy"], "unknown option attention=flashy: did you mean sdpa_flash? choose one of eager, "
                           "flash_attention_2, sdpa"),
    (["attention=eager,flashy"], "unknown option attention=flashy"),
    (["batch_sizee=4"], "unknown key 'batch_sizee': did you mean batch_size?"),
    (["--experiment", "../x"], "experiment name '../x' is not a safe directory name"),
    (["--experiment", "nope"], "unknown experiment 'nope': choose one of attention, batch_scaling"),
    (["data.path=/no/such/file.smi"], "/no/such/file.smi"),
    (["model.path=/no/such/model"], "/no/such/model"),
    (["--limit", "0"], "--limit 0"),
])
def test_front_door_refuses(tool: Tool, args: list[str], match: str) -> None:
    refuse(tool, *FAST, *args, match=match)


@pytest.mark.parametrize("args, match", [
    (["-m", "experiment=../x"], "unknown experiment '../x'"),
    (["-m", "attention=flashy"], "unknown option attention=flashy"),
    (["kv_cache=nope"], "unknown option kv_cache=nope"),
    (["-m", "kv_cache=static", "--limit", "2"], "--limit: not a flag of python -m molgen_grid"),
    # the tool's flags are refused, never dropped: the grid a user asked only to see is not launched
    (["--dry-run", "-m", "kv_cache=static,dynamic"], "so nothing ran: the tool's flags go to molgen-grid, e.g. "
                                                    "molgen-grid --dry-run [overrides]"),
    (["--status", "--json"], "--status --json: not a flag of python -m molgen_grid"),
])
def test_hydra_entry_refuses(tool: Tool, args: list[str], match: str) -> None:
    refuse(tool, *args, match=match, hydra=True)


def test_data_file_without_valid_smiles_is_refused(tool: Tool, tmp_path: Path) -> None:
    data = tmp_path / "bad.smi"
    data.write_text("not_a_smiles\nC1CC\n")
    refuse(tool, *FAST, f"data.path={data}", match=str(data))


def test_force_of_an_unknown_cell_is_refused(tool: Tool) -> None:
    refuse(tool, "--force", "gpu=local,attention=flashy", match="not a cell of this grid")


def test_slurm_partition_without_a_cluster_is_refused(tool: Tool, tmp_path: Path) -> None:
    """A Slurm configuration whose controller does not answer (nothing listens on its port): `scontrol ping`
    says DOWN at once (a missing slurm.conf would have scontrol retry it for a minute)."""
    conf = tmp_path / "no-cluster" / "slurm.conf"
    conf.parent.mkdir()
    conf.write_text("ClusterName=nowhere\nSlurmctldHost=localhost\nSlurmctldPort=9\n"
                    "NodeName=localhost CPUs=1 State=UNKNOWN\nPartitionName=debug Nodes=localhost Default=YES\n")
    tool.extra_env["SLURM_CONF"] = str(conf)
    refuse(tool, *FAST, "gpu=h100,a100", match="gpu=a100, gpu=h100 needs a Slurm cluster and no Slurm controller")


@pytest.mark.parametrize("hydra", [False, True])
def test_bad_input_ends_a_real_process_with_status_2(tool: Tool, hydra: bool) -> None:
    """Each front door's process (`molgen-grid`, `python -m molgen_grid`) ends with status 2 and one line."""
    refuse(tool, *([] if hydra else FAST), "attention=flashy", match="unknown option attention=flashy: did you "
           "mean sdpa_flash?", hydra=hydra, process=True)
