"""The cells a user names to rerun (`--force NAME ...`): full names, parts of names, or cells outside the grid."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from molgen_grid.errors import InputError
from molgen_grid.grid.cells import Cell, name_matches, parse_cell_name
from molgen_grid.grid.spec import GridSpec
from molgen_grid.grid.status import short_labels


def named_cells(spec: GridSpec, names: Iterable[str], grid: list[Cell], root: Path | None = None) -> list[Cell]:
    """Cells named on the command line.

    A name is a cell's full name, its name as `--status` shows it (the parts not every cell shares), or a part
    of it (`kv_cache=static`) that selects every matching cell of the grid; a full name outside the grid is
    rebuilt from its directory's overrides.json under `root` when it ran before, else from the name itself.
    """
    by_name = {c.name: c for c in grid}
    by_label = dict(zip(short_labels(list(by_name)), by_name.values()))
    out: list[Cell] = []
    for name in names:
        if name in by_name or name in by_label:
            out.append(by_name.get(name) or by_label[name])
            continue
        matches = [c for c in grid if name_matches(name, lambda wanted, c=c: spec.settings_of(c, wanted))]
        if matches:
            out.extend(matches)
            continue
        recorded = root / name / "overrides.json" if root is not None and "/" not in name else None
        try:
            overrides = json.loads(recorded.read_text()) if recorded is not None and recorded.is_file() \
                else parse_cell_name(name)
            c = spec.cell(overrides)
        except (ValueError, InputError) as e:
            raise InputError(f"{name!r} is not a cell of this grid ({e}): copy a name from --status") from None
        if c.name != name:
            raise InputError(f"{name!r} matches no cell of this grid: did you mean {c.name!r}?")
        out.append(c)
    return list({c.name: c for c in out}.values())
