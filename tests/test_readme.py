"""The README's built-in studies table says what the studies themselves say."""

import re
from pathlib import Path

from trainlab.study import builtin_studies
from trainlab.study.spec import expand

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_built_in_studies_table_has_each_studys_runs_and_measured_quick_time():
    rows = {m[0]: (int(m[1]), m[2]) for m in re.findall(r"^\| `([\w-]+)` \|.*\| (\d+) \| ([^|]+) \|[^|]*\|[^|]*\|$",
                                                        README.read_text(), flags=re.M)}
    specs = {spec.name: spec for spec in builtin_studies()}
    assert set(rows) == set(specs)
    for name, spec in specs.items():
        scale = "quick" if "quick" in spec.scales else None  # the quickstart has one scale
        runs, quick = rows[name]
        assert runs == len(expand(spec, scale)), name
        measured = spec.run_time[scale or "full"]  # e.g. "32 s on 2 CPU cores (measured)"
        assert measured.startswith(quick.strip() + " "), (name, quick, measured)
