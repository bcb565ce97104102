"""The ledger's capacity and demand by role and month, as selection sees them.

Folded with the ledger's own pure fold (`domain.ledger.evolve_capacity`), from the two
events that set capacity and demand (`CapacitySet`, `DemandAssigned`); hours and
threshold events change nothing selection uses and are not kept.

Capacity available to the candidates in a cell (role, month) =
capacity - time off - the demand held by running projects, never below 0 (a cell already
over-allocated by running projects has nothing left for a candidate). The cells are the
months the ledger knows for each role (a capacity line or a demand); a month with demand
and no capacity line has a capacity of 0, as the ledger's over-allocation check says.

Which projects hold capacity (`HOLDING`): `in_progress` and `on_hold`. A project on hold
keeps the people assigned to it until its demand is set to 0 or it is cancelled or
completed, because it is expected to resume. An approved project that has not started is
still a candidate (selection may leave it out), so its demand, like that of proposed and
under-review projects, is the candidate's demand if selected, not held. Rejected,
cancelled and completed projects hold nothing. Demand of a project prioritization has
never seen counts as held (capacity someone took is not free).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from contracts import ledger as lg
from contracts import projects as p
from contracts.base import FrozenModel
from domain.ledger import CapacityState, evolve_capacity

#: A capacity cell: (role, month).
Cell = tuple[str, str]

#: Statuses whose demand in the ledger holds capacity (is not available to candidates).
HOLDING = frozenset({p.ProjectStatus.IN_PROGRESS, p.ProjectStatus.ON_HOLD})

_ZERO = Decimal(0)


@dataclass(frozen=True)
class CapacityPicture:
    """What the ledger leaves for the candidates, and what each project would need."""

    #: Net capacity minus held demand, never below 0, per cell.
    available: Mapping[Cell, float]
    #: Demand held by running projects per cell (what `available` was reduced by).
    held: Mapping[Cell, float]
    #: Demand per project that does not hold capacity (the candidates' own), per cell.
    demand: Mapping[str, Mapping[Cell, float]]


@dataclass
class LedgerCapacity:
    """Every role's capacity and demand, one `CapacityState` per role and month.

    Per month rather than per role: the ledger's fold copies a state's demand map on every
    change, so a state per role would make folding a role's demand quadratic in the
    months x projects it has seen; a month holds only that month's projects."""

    cells: dict[Cell, CapacityState] = field(default_factory=dict)
    #: The unit of every role that has capacity (the ledger keeps a role in one unit).
    units: dict[str, lg.CapacityUnit] = field(default_factory=dict)

    def apply(self, event: FrozenModel) -> bool:
        """Fold a `CapacitySet` or `DemandAssigned`; False for anything else (and for demand
        on a role that has no capacity yet, which the ledger never decides)."""
        if isinstance(event, lg.CapacitySet):
            cell = (event.role, event.period)
            self.units.setdefault(event.role, event.unit)
            self.cells[cell] = evolve_capacity(self.cells.get(cell), event)
            return True
        if isinstance(event, lg.DemandAssigned):
            unit = self.units.get(event.role)
            if unit is None:
                return False
            cell = (event.role, event.period)
            state = self.cells.get(cell)
            if state is None:
                # A month without a capacity line: 0, as the ledger reads it.
                empty = lg.CapacitySet(
                    role=event.role, period=event.period, amount=_ZERO, unit=unit, time_off=_ZERO
                )
                state = evolve_capacity(None, empty)
            # The running total follows this fold's own previous figure, so it stays
            # consistent whatever the event says the previous figure was.
            previous = state.demand.get((event.project_id, event.period), _ZERO)
            if previous != event.previous_amount:
                event = event.model_copy(update={"previous_amount": previous})
            self.cells[cell] = evolve_capacity(state, event)
            return True
        return False

    def knows(self, role: str) -> bool:
        return role in self.units

    def picture(self, status_of: Callable[[str], p.ProjectStatus | None]) -> CapacityPicture:
        """Available capacity per cell once running projects take theirs, and every other
        project's demand. `status_of` answers None for a project it does not know."""
        available: dict[Cell, float] = {}
        held_cells: dict[Cell, float] = {}
        demand: dict[str, dict[Cell, float]] = {}
        for cell in sorted(self.cells):
            state = self.cells[cell]
            held = _ZERO
            for (project_id, _), amount in state.demand.items():
                status = status_of(project_id)
                if status is None or status in HOLDING:
                    held += amount
                elif status not in p.TERMINAL_STATUSES:
                    demand.setdefault(project_id, {})[cell] = float(amount)
            available[cell] = float(max(state.net_capacity(cell[1]) - held, _ZERO))
            if held:
                held_cells[cell] = float(held)
        return CapacityPicture(
            available=available,
            held=held_cells,
            demand={pid: dict(sorted(cells.items())) for pid, cells in sorted(demand.items())},
        )
