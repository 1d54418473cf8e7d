"""Seeded fault injection, for testing clients against a misbehaving service.

A :class:`FaultPlan` makes the emulator answer a fraction of requests with 429 or 503
(with ``Retry-After``), drop connections without answering, preempt running tasks (the
process is killed and the task requeued, as Batch does when a spot node is reclaimed) and
delay task starts. Decisions come from one ``random.Random(seed)``, so a plan replays the
same way for the same sequence of requests.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field


@dataclass(frozen=True)
class FaultPlan:
    """What goes wrong, and how often. Rates are probabilities in [0, 1]."""

    seed: int = 0
    throttle_rate: float = 0.0
    """Fraction of requests answered 429 ``TooManyRequests``."""
    unavailable_rate: float = 0.0
    """Fraction of requests answered 503 ``ServerBusy``."""
    retry_after: float = 0.2
    """Seconds advertised in ``Retry-After`` / ``retry-after-ms`` on 429 and 503."""
    drop_rate: float = 0.0
    """Fraction of requests whose connection is closed without any response."""
    operations: frozenset[str] | None = None
    """Restrict request faults to these operation IDs (e.g. ``"Tasks_CreateTaskCollection"``)."""
    preempt_rate: float = 0.0
    """Probability that a task attempt is preempted while it runs."""
    preempt_after: float = 0.1
    """Seconds into a preempted attempt at which the preemption strikes."""
    task_start_delay: float = 0.0
    """Seconds between a task being scheduled and its process starting."""

    def __post_init__(self) -> None:
        for name in ("throttle_rate", "unavailable_rate", "drop_rate", "preempt_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"FaultPlan.{name} must be between 0 and 1, got {value!r}")
        if self.throttle_rate + self.unavailable_rate + self.drop_rate > 1.0:
            raise ValueError("FaultPlan request fault rates add up to more than 1")
        for name in ("retry_after", "preempt_after", "task_start_delay"):
            if getattr(self, name) < 0:
                raise ValueError(f"FaultPlan.{name} must not be negative")


@dataclass
class FaultInjector:
    """Draws the plan's decisions; counts what it injected (for tests and benchmarks)."""

    plan: FaultPlan
    _random: random.Random = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    injected: dict[str, int] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self._random = random.Random(self.plan.seed)

    def request_fault(self, operation: str) -> str | None:
        """``"throttle"``, ``"unavailable"``, ``"drop"`` or ``None`` for this request."""
        plan = self.plan
        if plan.operations is not None and operation not in plan.operations:
            return None
        if not (plan.throttle_rate or plan.unavailable_rate or plan.drop_rate):
            return None
        with self._lock:
            draw = self._random.random()
        fault = None
        if draw < plan.throttle_rate:
            fault = "throttle"
        elif draw < plan.throttle_rate + plan.unavailable_rate:
            fault = "unavailable"
        elif draw < plan.throttle_rate + plan.unavailable_rate + plan.drop_rate:
            fault = "drop"
        if fault:
            self._count(fault)
        return fault

    def preempt(self) -> bool:
        """Whether the task attempt starting now will be preempted."""
        if not self.plan.preempt_rate:
            return False
        with self._lock:
            hit = self._random.random() < self.plan.preempt_rate
        if hit:
            self._count("preempt")
        return hit

    def _count(self, what: str) -> None:
        with self._lock:
            self.injected[what] = self.injected.get(what, 0) + 1
