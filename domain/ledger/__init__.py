"""The resource ledger, pure: budget pools and role capacity as state machines
(`decide(command, state, now, refs) -> events`, `evolve(state, event) -> state`, the same
signatures as services.intake.domain), the threshold checks the ledger service runs after
each change, and the report figures. No I/O and no clock.

Definitions (every figure is Decimal, in the pool's currency):

- **allocated**: allocations - releases ± transfers, per project and for the pool.
- **unallocated** = pool amount - allocated. Invariant: never below -(approved over-commit).
- **committed**: purchase orders and contracts, plus each recurring cost line
  (amount per period * its months).
- **open commitments**: Σ over commitments of max(0, its amount - the actual costs that
  named it in `commitment_ref`). Actuals that name no commitment settle none.
- **consumed** = actual + open commitments; **consumption %** = consumed / amount * 100.
  With no actual naming a commitment this is (committed + actual) / amount.
- **forecast at completion** = actual + open commitments: what will have been spent once
  everything already committed is invoiced. **remaining** = allocated - forecast.
- **burn rate** = actual / the number of months that have an actual cost.
- A project is **overspent** in a pool when its actual there exceeds its allocation there.
- A role is **over-allocated** in a month when demand > (capacity - time off) * (1 +
  tolerance / 100); **utilisation %** = demand / (capacity - time off) * 100.

Thresholds are raised once per crossing: a pool or capacity state also folds the threshold
events already in its history (which thresholds are raised), and `pool_threshold_events` /
`capacity_threshold_events` return only the changes against that: a crossing for each
figure now at or beyond a threshold that is not raised, a clear for each raised one the
figure has fallen back from. Folding those events makes the next check return nothing.
"""

from __future__ import annotations

from domain.ledger.capacity import (
    CapacityLine,
    CapacityState,
    decide_capacity,
    evolve_capacity,
)
from domain.ledger.eligibility import (
    NO_COSTS,
    NOT_FUNDABLE,
    fundable,
    may_record_costs,
    project_status,
)
from domain.ledger.figures import (
    POOL_GROUPINGS,
    BudgetFigures,
    CapacityCell,
    Grouping,
    Shortfall,
    StaffingPlan,
    Unstaffed,
    budget_report,
    capacity_report,
    over_allocated_cells,
    staffing_plan,
)
from domain.ledger.periods import (
    CENT,
    HUNDRED,
    ZERO,
    fiscal_label,
    fiscal_months,
    month_index,
    months_between,
    percent,
    period_at,
)
from domain.ledger.persistent import (
    LayeredMap,
    RefSet,
    with_changes,
)
from domain.ledger.pools import (
    CommitmentLine,
    PoolState,
    decide_pool,
    evolve_pool,
)
from domain.ledger.thresholds import (
    capacity_threshold_events,
    capacity_tie_out_problems,
    is_over_allocated,
    pool_threshold_events,
    pool_tie_out_problems,
    threshold_changes,
)

__all__ = [
    "CENT",
    "HUNDRED",
    "NOT_FUNDABLE",
    "NO_COSTS",
    "POOL_GROUPINGS",
    "ZERO",
    "BudgetFigures",
    "CapacityCell",
    "CapacityLine",
    "CapacityState",
    "CommitmentLine",
    "Grouping",
    "LayeredMap",
    "PoolState",
    "RefSet",
    "Shortfall",
    "StaffingPlan",
    "Unstaffed",
    "budget_report",
    "capacity_report",
    "capacity_threshold_events",
    "capacity_tie_out_problems",
    "decide_capacity",
    "decide_pool",
    "evolve_capacity",
    "evolve_pool",
    "fiscal_label",
    "fiscal_months",
    "fundable",
    "is_over_allocated",
    "may_record_costs",
    "month_index",
    "months_between",
    "over_allocated_cells",
    "percent",
    "period_at",
    "pool_threshold_events",
    "pool_tie_out_problems",
    "project_status",
    "staffing_plan",
    "threshold_changes",
    "with_changes",
]
