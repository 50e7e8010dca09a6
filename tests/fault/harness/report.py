"""What runs found: one run's result, and a sweep's summary line and details."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from .invariants import TERMINAL
from .plan import RunSpec


@dataclass
class RunResult:
    spec: RunSpec
    batch_id: str | None = None
    status: str | None = None
    lost: int = 0
    duplicated: int = 0
    wrong_answers: int = 0   # output lines whose body is not their own line's answer
    bad_transitions: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    crashes: int = 0
    crash_steps: list[str] = field(default_factory=list)
    duplicates_sent: int = 0
    seconds: float = 0.0
    transitions: list[str] = field(default_factory=list)


@dataclass
class Sweep:
    runs: list[RunResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    aws_injected: Counter = field(default_factory=Counter)
    timed_out: int = 0   # invocations that outlived their timeout (each leaves its message for redelivery)

    @property
    def lost(self) -> int:
        return sum(r.lost for r in self.runs)

    @property
    def duplicated(self) -> int:
        return sum(r.duplicated for r in self.runs)

    @property
    def bad(self) -> int:
        return sum(len(r.bad_transitions) for r in self.runs)

    @property
    def non_terminal(self) -> int:
        return sum(r.status not in TERMINAL for r in self.runs)

    @property
    def wrong_answers(self) -> int:
        return sum(r.wrong_answers for r in self.runs)

    def summary(self) -> str:
        return (f"fault injection: {len(self.runs)} runs, {self.lost} lost, {self.duplicated} duplicated, "
                f"{self.bad} bad transitions, {self.non_terminal} non-terminal, "
                f"{self.wrong_answers} answers not their line's own")

    def details(self) -> list[str]:
        statuses = Counter(r.status for r in self.runs)
        kinds = Counter(r.spec.kind for r in self.runs)
        out = [f"  {self.seconds:.1f}s; kinds {dict(kinds)}; final statuses {dict(statuses)}; "
               f"worker crashes {sum(r.crashes for r in self.runs)}; duplicate deliveries sent "
               f"{sum(r.duplicates_sent for r in self.runs)}; AWS errors injected "
               f"{sum(self.aws_injected.values())} {dict(self.aws_injected)}; invocations past their "
               f"timeout {self.timed_out}"]
        for r in self.runs:
            if r.problems or r.bad_transitions or r.lost or r.duplicated:
                out.append(f"  seed {r.spec.seed} ({r.spec.kind}) {r.batch_id} {r.status}: lost {r.lost}, "
                           f"duplicated {r.duplicated}, transitions {r.transitions}, bad {r.bad_transitions}, "
                           f"problems {r.problems[:5]}")
        steps = Counter(s.split("#")[0] for r in self.runs for s in r.crash_steps)
        slowest = max((r.seconds for r in self.runs), default=0.0)
        out.append(f"  crashes by step {dict(steps)}; slowest run {slowest:.1f}s")
        out.extend(f"  {p}" for p in self.problems)
        return out
