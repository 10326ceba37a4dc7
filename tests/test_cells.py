"""Cell names: pure, order-independent, defaults elided, reversible, bounded."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hydra import initialize_config_dir
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.utils import create_config_search_path
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from molgen_grid.__main__ import CONF_DIR
from molgen_grid.errors import InputError
from molgen_grid.grid.cells import MAX_NAME_BYTES, Cell, make_cell, parse_cell_name
from molgen_grid.grid.forced import named_cells
from molgen_grid.grid.config_keys import NOT_CELL_SECTIONS, changes, flat_keys, without
from molgen_grid.grid.config_part import ConfigPart
from molgen_grid.grid.report.artifacts import grid_cells
from molgen_grid.grid.spec import GridSpec


@pytest.fixture(scope="module")
def spec() -> GridSpec:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        yield GridSpec(GlobalHydra.instance().config_loader(), "config", "default")


def test_name_lists_every_axis_in_fixed_order(spec: GridSpec) -> None:
    name = spec.cell(["kv_cache=static"]).name
    assert name == ("gpu=local,attention=sdpa,kv_cache=static,template_building=serial,"
                    "tokenizer_cache=none,logit_processor=python")


def test_name_ignores_override_order_and_typed_defaults(spec: GridSpec) -> None:
    a = spec.cell(["batch_size=8", "attention=eager"])
    b = spec.cell(["attention=eager", "gpu=local", "batch_size=8", "sampling=greedy", "repeats=5"])
    assert a.name == b.name
    assert a.name.endswith(",batch_size=8")


def test_experiment_defaults_are_implied(spec: GridSpec) -> None:
    # the default experiment sets sample_size: 4, so typing it changes nothing, typing 2 does
    assert spec.cell(["sample_size=4"]).name == spec.cell([]).name
    assert spec.cell(["sample_size=2"]).name.endswith(",sample_size=2")


def test_engine_and_hydra_settings_stay_out_of_names(spec: GridSpec) -> None:
    assert spec.cell(["grid.results_dir=/elsewhere", "hydra.launcher.action=status"]).name == spec.cell([]).name


def test_name_turns_back_into_the_same_cell(spec: GridSpec) -> None:
    cell = spec.cell(["kv_cache=static", "sampling.top_p=0.5", "batch_size=2"])
    again = spec.cell(parse_cell_name(cell.name))
    assert again == cell and again.name == cell.name


def test_unsafe_or_long_values_are_hashed_and_names_bounded() -> None:
    cell = make_cell([("gpu", "local")], {"data.path": "/some/dir/mols.smi", "x": "y" * 400})
    assert "/" not in cell.name
    assert len(cell.name.encode()) <= MAX_NAME_BYTES
    with pytest.raises(ValueError):
        parse_cell_name(cell.name)
    assert "data.path=/some/dir/mols.smi" in cell.overrides


def test_names_cut_to_the_bound_stay_apart() -> None:
    """Two configurations that differ only past the cut must not share a directory: the cut name ends in a hash
    of the whole name."""
    extra = {f"setting_{i:02d}": "value" for i in range(30)}
    one = make_cell([("gpu", "local")], extra)
    other = make_cell([("gpu", "local")], {**extra, "setting_29": "other"})
    assert one.name[:150] == other.name[:150] and one.name != other.name
    assert max(len(one.name.encode()), len(other.name.encode())) <= MAX_NAME_BYTES


def test_unknown_options_and_keys_are_refused_with_a_suggestion(spec: GridSpec) -> None:
    with pytest.raises(InputError, match="attention=flashy: did you mean sdpa_flash[?] choose one of eager, "
                                         "flash_attention_2, sdpa"):
        spec.cell(["attention=flashy"])
    with pytest.raises(InputError, match="attention=zzz: choose one of eager"):  # nothing close: no suggestion
        spec.cell(["attention=zzz"])
    with pytest.raises(InputError, match="did you mean batch_size"):
        spec.cell(["batch_sise=3"])


def test_force_by_name_rebuilds_a_cell_outside_the_grid(spec: GridSpec) -> None:
    grid = spec.cells([["kv_cache=dynamic"]])
    other = spec.cell(["kv_cache=static", "attention=eager"])
    assert named_cells(spec, [other.name], grid) == [other]
    assert named_cells(spec, ["kv_cache=dynamic"], grid) == grid
    with pytest.raises(InputError, match="matches no cell of this grid: did you mean 'gpu=local,attention=eager,"):
        named_cells(spec, ["attention=eager"], grid)
    with pytest.raises(InputError, match="not a cell of this grid"):
        named_cells(spec, ["nonsense"], grid)


def test_keys_of_a_chosen_option_compare_with_that_option(spec: GridSpec) -> None:
    # top_p_sampling4 samples: turning sampling off is not a default and must stay in the cell
    assert spec.cell(["sampling=top_p_sampling4", "sampling.do_sample=false"]).name.endswith(
        ",sampling=top_p_sampling4,sampling.do_sample=false")
    # gpu=h100's sampling-like keys: a value of its own option file is a default
    assert spec.cell(["gpu=h100", "gpu.device=auto"]).name == spec.cell(["gpu=h100"]).name
    assert spec.cell(["gpu=h100", "gpu.device=cpu"]).name.endswith(",gpu.device=cpu")


def test_a_hashed_name_is_forced_through_its_recorded_overrides(spec: GridSpec, tmp_path) -> None:
    cell = spec.cell(["kv_cache=static", "data.path=/data/mine.smi"])
    assert "~" in cell.name
    (tmp_path / cell.name).mkdir()
    (tmp_path / cell.name / "overrides.json").write_text(__import__("json").dumps(cell.overrides))
    assert named_cells(spec, [cell.name], [], tmp_path) == [cell]


# --- One configuration, one cell (a test per rule) --------------------------------------------------------------


def test_prefixes_do_not_make_another_cell(spec: GridSpec) -> None:
    plain = spec.cell(["gpu=h100", "gpu.device=cpu"])
    assert spec.cell(["gpu=h100", "++gpu.device=cpu"]).name == plain.name
    assert spec.cell(["gpu=h100", "+gpu.device=cpu"]).name == plain.name
    assert spec.cell(["batch_size=8"]).name == spec.cell(["++batch_size=8"]).name


@pytest.mark.parametrize("one, other", [
    ("sampling.top_p=0.4", "sampling.top_p=0.40"),
    ("sampling.do_sample=true", "sampling.do_sample=True"),
    ("batch_size=8", "batch_size=8"),
    ("max_new_tokens=1000", "max_new_tokens=1_000"),
    ("sampling.temperature=1e-3", "sampling.temperature=0.001"),
])
def test_value_spellings_do_not_make_another_cell(spec: GridSpec, one: str, other: str) -> None:
    assert spec.cell([one]).name == spec.cell([other]).name
    cell = spec.cell([one])
    assert spec.cell(parse_cell_name(cell.name)) == cell  # the one spelling reads back as the same value


def test_a_string_that_reads_as_a_number_keeps_its_quotes(spec: GridSpec) -> None:
    cell = spec.cell(["+note='1.0'"])
    assert "+note='1.0'" not in cell.overrides and "++note='1.0'" in cell.overrides
    assert spec.cell(cell.overrides) == cell


@pytest.mark.parametrize("override", ["gpu.time_min=30", "gpu.mem_gb=8", "gpu.cpus_per_task=2",
                                      "gpu.partition=other", "gpu.gres=gpu:h100:2", "gpu.additional={qos:high}"])
def test_how_a_cell_is_run_is_not_its_identity(spec: GridSpec, override: str) -> None:
    base = spec.cell(["gpu=h100"])
    cell = spec.cell(["gpu=h100", override])
    assert cell.name == base.name and cell == base
    assert cell.run_overrides == [f"++{override}"] and override not in cell.overrides
    assert spec.config_part(cell) == spec.config_part(base)


def test_group_scoped_key_of_another_option(tmp_path) -> None:
    """A key only some options of a group have, set for a cell whose option lacks it: the options that have it
    are named; `++` adds it anyway."""
    conf = tmp_path / "conf"
    shutil.copytree(CONF_DIR, conf)
    (conf / "gpu" / "h100.yaml").write_text((conf / "gpu" / "h100.yaml").read_text() + "only_here: 1\n")
    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(str(conf)))
    spec = GridSpec(loader, "config", "default")
    assert spec.cell(["gpu=h100", "gpu.only_here=2"]).name.endswith(",gpu.only_here=2")
    with pytest.raises(InputError, match=r"gpu.only_here is a key of gpu=h100, not of gpu=local: choose one "
                                         r"of those options, or write \+\+gpu.only_here=... to add it"):
        spec.cell(["gpu.only_here=2"])
    added = spec.cell(["++gpu.only_here=2"])
    assert "++gpu.only_here=2" in added.overrides
    # a grid that sweeps the group and the key: the key is left out of the options that lack it (one cell each)
    grid = spec.cells([["gpu=local", "gpu.only_here=2"], ["gpu=local", "gpu.only_here=3"],
                       ["gpu=h100", "gpu.only_here=2"], ["gpu=h100", "gpu.only_here=3"]])
    assert [c.name.split(",attention")[0] + c.name.rpartition("python")[2] for c in grid] == [
        "gpu=local", "gpu=h100,gpu.only_here=2", "gpu=h100,gpu.only_here=3"]
    assert grid[0] == spec.cell([])  # the same cell, fingerprint and all, as the one no sweep names


def test_nested_keys_of_how_a_cell_runs_stay_out_of_the_fingerprint(spec: GridSpec, tmp_path) -> None:
    """`hang.factor` lives in the primary config: a guard of how long a cell may take, not what it measures."""
    cell = spec.cell(["hang.factor=3"])
    assert cell.name == spec.cell([]).name and cell.run_overrides == ["++hang.factor=3"]
    conf = tmp_path / "conf"
    shutil.copytree(CONF_DIR, conf)
    edited = (conf / "config.yaml").read_text().replace("  factor: 10", "  factor: 20")
    (conf / "config.yaml").write_text(edited.replace("repeats: 5", "repeats: 6"))
    other = GridSpec(ConfigLoaderImpl(config_search_path=create_config_search_path(str(conf))), "config", "default")
    before, after = spec.config_part(spec.cell([])), other.config_part(other.cell([]))
    assert "factor: 20" in edited and changes(before, after) == ["repeats 5 -> 6"]  # repeats is identity
    (conf / "config.yaml").write_text(edited)  # the factor alone
    alone = GridSpec(ConfigLoaderImpl(config_search_path=create_config_search_path(str(conf))), "config", "default")
    assert alone.config_part(alone.cell([])) == before


def loader_of(conf: Path) -> ConfigLoaderImpl:
    return ConfigLoaderImpl(config_search_path=create_config_search_path(str(conf)))


def composed_keys(spec: GridSpec, cell: Cell) -> dict[str, str]:
    """What the cell's own process composes, key by key, as the fingerprint keeps it."""
    full = OmegaConf.to_container(spec.compose(cell), resolve=False)
    return without(flat_keys(full), (*NOT_CELL_SECTIONS, *spec.not_identity))


def agree(spec: GridSpec, cells: list[Cell]) -> None:
    """The plan's config part of each cell is what Hydra composes, and what the cell's own process takes (from the
    files alone, its groups from the defaults list: no base config composed), key for key."""
    assert spec.files.choices == spec.choices
    in_cell = ConfigPart.in_cell(spec.loader, spec.config_name, spec.base_overrides, spec.not_identity)
    for cell in cells:
        assert spec.config_part(cell) == composed_keys(spec, cell) == in_cell(cell), cell.name


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml")))
def test_the_plans_config_keys_are_those_hydra_composes(experiment: str) -> None:
    """The plan merges the cell's config files without composing the cell; a cell's process composes it: the
    two agree key by key on every experiment's cells (their first and last few, and a cell with overrides)."""
    spec = GridSpec(loader_of(CONF_DIR), "config", experiment)
    cells = grid_cells(spec)
    agree(spec, cells[:3] + cells[-2:] + [spec.cell(["batch_size=2", "gpu=h100", "+extra_key=1"])])


NESTED = {
    "config.yaml": "defaults:\n  - _self_\n  - db: mysql\ngrid:\n  task: task.run\nx: 1\n",
    "db/mysql.yaml": "defaults:\n  - engine: innodb\nhost: localhost\n",
    "db/postgres.yaml": "defaults:\n  - engine: pg\nhost: pghost\n",
    "db/engine/innodb.yaml": "kind: innodb\n", "db/engine/myisam.yaml": "kind: myisam\n",
    "db/engine/pg.yaml": "kind: pg\n",
}


def test_nested_groups_follow_their_parent_and_are_named_by_their_package(tmp_path) -> None:
    """A group chosen by an option's own defaults (`db/engine` from `db/mysql.yaml`) is no axis: it follows the
    option, so `db=postgres` composes `engine: pg`; set on the command line it is named `db.engine=...` (a
    directory name holds no `/`) and read back as the group."""
    for relative, text in NESTED.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text)
    spec = GridSpec(loader_of(tmp_path), "config", None)
    cells = spec.cells([["db=mysql"], ["db=postgres"], ["db=postgres", "db/engine=pg"],
                        ["db=postgres", "db/engine=innodb"]])
    assert [c.name for c in cells] == ["db=mysql", "db=postgres", "db=postgres,db.engine=innodb"]
    agree(spec, cells)
    assert spec.config_part(cells[1])["db.engine.kind"] == '"pg"'
    assert spec.cell(parse_cell_name(cells[2].name)) == cells[2]
    assert named_cells(spec, ["db.engine=innodb"], cells) == [cells[0], cells[2]]  # mysql's engine is innodb
