"""Intake's command-id index against a dict of the lowest position per id: adds one by one
and in bulk, in any order, across the merges of its recent ids into its sorted arrays."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.intake import command_ids as module
from services.intake.command_ids import CommandIds

IDS = st.sampled_from([f"cmd-{n}" for n in range(40)] + ["", "é", "\x00", "a" * 300])
ADD = st.tuples(st.just("add"), IDS, st.integers(1, 10**12))
BULK = st.tuples(st.just("bulk"), st.lists(st.tuples(IDS, st.integers(1, 10**12)), max_size=20))


@settings(max_examples=300, deadline=None)
@given(ops=st.lists(st.one_of(ADD, BULK), max_size=60), merge_every=st.integers(1, 8))
def test_the_index_answers_as_a_dict_of_first_positions(
    ops: list[tuple[object, ...]], merge_every: int
) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module, "MERGE_EVERY", merge_every)
        index, oracle = CommandIds(), dict[str, int]()
        for op in ops:
            if op[0] == "bulk":
                pairs = op[1]
                assert isinstance(pairs, list)
                index.add_many(pairs)
            else:
                _, command_id, position = op
                assert isinstance(command_id, str) and isinstance(position, int)
                pairs = [(command_id, position)]
                index.add(command_id, position)
            for command_id, position in pairs:
                oracle[command_id] = min(position, oracle.get(command_id, position))
            assert len(index) == len(oracle)
            for command_id in [f"cmd-{n}" for n in range(40)] + ["", "é", "\x00", "a" * 300]:
                assert index.first_position(command_id) == oracle.get(command_id)
