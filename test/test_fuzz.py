"""The seeded CI-sized subset of the fuzz campaign (ros2_inst3d/fuzz.py; the long campaign is
``ros2-inst3d fuzz``): no case of any group may escape as a traceback or break the scan account,
and every generator must produce both accepted and refused inputs (a generator whose cases are
all refused, or all accepted, tests nothing)."""

from __future__ import annotations

import pytest

from ros2_inst3d.cli import main
from ros2_inst3d.fuzz import GROUPS, format_table, run_campaign

CI_COUNTS = {"clouds": 300, "files": 120, "configs": 60, "checkpoints": 12, "bags": 5}


@pytest.fixture(scope="module")
def campaign():
    return {r.name: r for r in run_campaign(CI_COUNTS, seed=12, cli_main=main)}


@pytest.mark.parametrize("group", GROUPS)
def test_no_fuzz_case_escapes_as_a_traceback(campaign, group):
    result = campaign[group]
    assert result.cases == CI_COUNTS[group]
    assert result.tracebacks == 0, "\n".join([format_table([result]), *result.failures])
    assert result.clean + result.ok == result.cases


@pytest.mark.parametrize("group", ["clouds", "files", "configs", "checkpoints"])
def test_each_generator_makes_accepted_and_refused_inputs(campaign, group):
    assert campaign[group].ok > 0 and campaign[group].clean > 0
