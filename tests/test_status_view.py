"""The status people read (status_view.py): counts per state and place first, then the cells that need attention,
the rest counted unless `--all`; a small grid lists every cell. States are real: cells of the light study run
(done), fail (`fail=boom`) and go stale (an option's file edited)."""
from __future__ import annotations

from conftest import Light

#: 60 cells (more than a small grid's 50), in two places; only `where=local` cells ever run here.
GRID = ["variant=a,b,c", "fail=null,boom", "where=local,h100", "spread=range(1,6)"]


def real_states(light: Light) -> None:
    """2 done cells and 2 failed ones, then `variant=b`'s done cell stale (its option's factor edited)."""
    light.cli("variant=a,b", "fail=null,boom", check=False)
    option = light.cwd / "variant" / "b.yaml"
    option.write_text(option.read_text().replace("factor: 2", "factor: 3"))


def table_rows(lines: list[str]) -> list[list[str]]:
    """The counts table's header and rows, cell by cell."""
    return [[c.strip() for c in line.replace("┃", "│").split("│")[1:-1]] for line in lines if line[:1] in "┃│"]


def listed(lines: list[str]) -> list[tuple[str, str]]:
    """(state, cell) of each listed cell: the lines under the `state  cell ...` header, up to the next line
    that is not indented."""
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["state", "cell"]) + 1
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("  ")), len(lines))
    return [(line.split()[0], line.split()[1]) for line in lines[start:end]]


def test_status_counts_first_lists_what_needs_attention_and_every_cell_of_a_small_grid(light: Light) -> None:
    real_states(light)
    lines = light.cli_here("--status", *GRID).stdout.splitlines()
    assert lines[0] == "experiment default: 60 cells: 1 done, 2 failed, 1 stale, 56 missing", lines
    assert table_rows(lines) == [["where", "done", "failed", "stale", "missing", "total"],
                                 ["where=local (local)", "1", "2", "1", "26", "30"],
                                 ["where=h100 (slurm, h100)", "", "", "", "30", "30"],
                                 ["all", "1", "2", "1", "56", "60"]]
    assert "need attention: 3 cells" in lines
    assert listed(lines) == [("failed", "where=local,variant=a,fail=boom"),
                             ("failed", "where=local,variant=b,fail=boom"), ("stale", "where=local,variant=b")]
    failed, _, stale = lines[lines.index("need attention: 3 cells") + 2:][:3]
    assert failed.endswith("  RuntimeError: boom") and stale.endswith("  config: variant.factor 2 -> 3"), lines
    assert "not listed: 56 missing, 1 done (--all lists every cell)" in lines
    every = light.cli_here("--status", "--all", *GRID).stdout.splitlines()
    assert every[:len(table_rows(lines)) + 4] == lines[:len(table_rows(lines)) + 4]  # the same title and counts
    shown = listed(every)
    assert len(shown) == 60 and [s for s, _ in shown] == ["failed"] * 2 + ["stale"] + ["missing"] * 56 + ["done"]
    assert shown[-1] == ("done", "where=local,variant=a")
    assert not any(line.startswith(("need attention", "not listed")) for line in every)
    # a small grid (at most 50 cells) lists every cell, failed first, as --all does
    lines = light.cli_here("--status", "variant=a,b", "fail=null,boom").stdout.splitlines()
    assert lines[0] == "experiment default: 4 cells: 1 done, 2 failed, 1 stale", lines
    assert listed(lines) == [("failed", "variant=a,fail=boom"), ("failed", "variant=b,fail=boom"),
                             ("stale", "variant=b"), ("done", "variant=a")]
    assert not any(line.startswith(("need attention", "not listed")) for line in lines)
    one = light.cli_here("--status", "variant=b", "fail=boom").stdout.splitlines()  # one cell, named
    assert one[0] == "experiment default: 1 cell: 1 failed", one
    assert listed(one) == [("failed", "where=local,variant=b,fail=boom")]
