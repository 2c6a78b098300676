"""One case's verification data in the parent: pristine inputs, compared rows, oracle, rules.

Built once per case and shared by every backend the case runs on: the float64 oracle and the
rounding model of a correct kernel on the compared rows (verify/rounding.py) are computed once
per draw, and each framework's same-dtype baseline calibrates that model live. Beyond the
oracle budget the compared rows are drawn from a secret (`secrets`) by `draw_rows`, which the
runner calls only after every backend of the round has returned its output: no backend can know
them in advance, nor learn them from the run's files (each draw is stored in the records, after
the fact).
"""

from __future__ import annotations

import secrets
from typing import Any

import numpy as np

from attnbench.case import Case
from attnbench.plugin.outputs import lse_shape
from attnbench.verify import agreement, grad
from attnbench.verify import inputs as inputs_mod
from attnbench.verify.baseline import baseline_lse, output_rule
from attnbench.verify.grad_plan import grad_plan
from attnbench.verify.lse import LseModel, calibration, lse_model
from attnbench.verify.reference import check_rows, rows_in_budget
from attnbench.verify.rounding import Model, oracle_and_model


class CaseData:
    """One case's pristine float64 inputs, compared rows, oracle output and pass rules."""

    def __init__(self, case: Case, seed: int, check_seed: int | None = None):
        self.case, self.seed = case, seed
        self.arrays = inputs_mod.reference_arrays(case, seed)
        self.check_seed: int | None = check_seed
        self._oracle: tuple[np.ndarray, Model] | None = None
        self._rules: dict[str, agreement.Rule] = {}
        self._lse: LseModel | None = None
        self._lse_base: dict[str, dict[str, Any]] = {}
        self._grads: grad.GradData | None = None
        self.grad_seed = secrets.randbits(63)
        self._grad_check: tuple[Any, Any] | None = None

    @property
    def all_rows(self) -> bool:
        """True when every query row fits the oracle budget (nothing is drawn)."""
        return rows_in_budget(self.case) >= self.case.seq_q

    def draw_rows(self) -> None:
        """Draw new compared rows (of the output and of the gradients) from fresh secrets;
        call it once the outputs exist. With every row compared nothing changes and the
        oracles are kept."""
        self._grad_check = None
        self.grad_seed = secrets.randbits(63)
        if self.all_rows and self._oracle is not None:
            return
        self.check_seed, self._oracle, self._rules = secrets.randbits(32), None, {}
        self._lse, self._lse_base = None, {}

    def grad_check(self) -> tuple[Any, Any]:
        """(plan, reference) of the gradients for this draw: which rows of dq, dk and dv are
        compared, their float64 oracle and floors (built once, shared by every backend)."""
        if self._grad_check is None:
            plan = grad_plan(self.case, self.grad_seed)
            data = self.grads()
            if plan.full:
                data.full = data.full or grad.grad_reference(self.case, self.arrays,
                                                             data.d_out, plan)
                self._grad_check = (plan, data.full)
            else:
                self._grad_check = (plan, grad.grad_reference(self.case, self.arrays,
                                                              data.d_out, plan))
        return self._grad_check

    def _rows_and_model(self) -> tuple[np.ndarray, Model]:
        if self._oracle is None:
            if self.check_seed is None:
                self.draw_rows()
            assert self.check_seed is not None
            rows = check_rows(self.case, self.check_seed)
            self._oracle = (rows, oracle_and_model(self.arrays, self.case, rows))
        return self._oracle

    @property
    def rows(self) -> np.ndarray:
        """The query rows compared with the oracle (all of them within the oracle budget)."""
        return self._rows_and_model()[0]

    @property
    def model(self) -> Model:
        """The float64 oracle on those rows and the rounding model of a correct kernel there."""
        return self._rows_and_model()[1]

    @property
    def ref(self) -> np.ndarray:
        """The float64 oracle output on those rows."""
        return self.model.ref

    @property
    def lse(self) -> LseModel:
        """The float64 lse of those rows and its bound's parts (cases with lse = true)."""
        if self._lse is None:
            self._lse = lse_model(self.arrays, self.case, self.rows)
        return self._lse

    def lse_calibration(self, framework: str) -> dict[str, Any]:
        """The same-dtype baseline's lse under the bound, in a framework (every lse record
        carries it): {"baseline_over_bound": ratio}, or why there is none."""
        if framework not in self._lse_base:
            try:
                base = baseline_lse(self.arrays, self.case, self.rows, framework)
                self._lse_base[framework] = calibration(self.lse, base)
            except Exception as exc:  # the bound still judges; the record says why
                self._lse_base[framework] = {"baseline_missing": f"{exc!r}"[:300]}
        return self._lse_base[framework]

    def rule(self, framework: str) -> agreement.Rule:
        """The output's pass rule in a framework: the rounding model, calibrated live by the
        same-dtype baseline of that framework (its verdict goes in every record)."""
        if framework not in self._rules:
            self._rules[framework] = output_rule(self.arrays, self.case, self.rows, self.model,
                                                 framework)
        return self._rules[framework]

    def grads(self) -> grad.GradData:
        """dO, the gradient-checked groups and their oracle (built on first use)."""
        if self._grads is None:
            self._grads = grad.grad_data(self.case, self.arrays, self.seed)
        return self._grads


def expected_shape(case: Case) -> tuple[int, ...]:
    """The output shape a backend must return: (total_q, Hq, Dv) packed, else (B, Hq, Sq, Dv)."""
    if case.layout == "packed":
        return (int(sum(case.q_lens or [case.seq_q] * case.batch)), case.heads_q, case.dv)
    return (case.batch, case.heads_q, case.seq_q, case.dv)


def expected_shapes(case: Case) -> dict[str, tuple[int, ...]]:
    """Each array a worker may ship for the case by name: the output, the lse and the
    gradients."""
    lse = {"lse": lse_shape(case)} if case.lse else {}
    return {"out": expected_shape(case), **lse, **grad.grad_shapes(case)}
