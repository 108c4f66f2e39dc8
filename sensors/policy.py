"""Pure decisions behind the sensors: no Dagster, no I/O, unit-tested on their own."""

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "BatchRef",
    "HealthThresholds",
    "HealthVerdict",
    "EdgeAction",
    "LandingPlan",
    "LiveDeployment",
    "PartitionRequest",
    "WindowTotals",
    "assess_health",
    "plan_edge_actions",
    "plan_landing_runs",
    "population_stability_index",
    "sum_windows",
]


@dataclass(frozen=True)
class BatchRef:
    """A complete landing batch, as the sensor sees it."""

    line: str
    variant: str
    batch: str
    marker_mtime_ns: int

    @property
    def partition(self) -> str:
        return f"{self.line}.{self.variant}"

    @property
    def batch_id(self) -> str:
        return f"{self.line}/{self.variant}/{self.batch}"


@dataclass(frozen=True)
class PartitionRequest:
    partition: str
    batches: tuple[str, ...]
    run_key: str


@dataclass(frozen=True)
class LandingPlan:
    requests: tuple[PartitionRequest, ...]
    unregistered: tuple[str, ...]  # batch ids waiting for their variant to be registered
    seen: dict[str, int]  # batch id -> marker mtime, the next cursor


def plan_landing_runs(
    batches: Iterable[BatchRef],
    *,
    seen: Mapping[str, int],
    ingested: Mapping[str, set[str]],
    registered_partitions: set[str],
) -> LandingPlan:
    """Which partitions need a run for which new batches.

    A batch is new when the cursor has not seen it and the ``images`` table has not ingested it
    (``mfgv onboard`` ingests its own batch, so the sensor must not retrain for it). All new batches
    of one partition go into one run; its run key names them, so a restarted sensor cannot request
    the same run twice. Batches of unregistered variants stay out of the cursor, so they are picked
    up once the variant is registered.
    """
    new: dict[str, list[BatchRef]] = {}
    unregistered: list[str] = []
    next_seen = dict(seen)
    for batch in sorted(batches, key=lambda b: (b.partition, b.batch)):
        if batch.batch_id in seen or batch.batch in ingested.get(batch.partition, set()):
            next_seen.setdefault(batch.batch_id, batch.marker_mtime_ns)
            continue
        if batch.partition not in registered_partitions:
            unregistered.append(batch.batch_id)
            continue
        new.setdefault(batch.partition, []).append(batch)
        next_seen[batch.batch_id] = batch.marker_mtime_ns
    requests = tuple(
        PartitionRequest(
            partition=partition,
            batches=tuple(b.batch for b in group),
            run_key=f"{partition}:" + ",".join(f"{b.batch}@{b.marker_mtime_ns}" for b in group),
        )
        for partition, group in sorted(new.items())
    )
    return LandingPlan(requests=requests, unregistered=tuple(unregistered), seen=next_seen)


# --- edge metrics -------------------------------------------------------------------------------


@dataclass(frozen=True)
class WindowTotals:
    """Summed counts of metric windows; rates are computed from sums, never averaged."""

    inspected: int
    rejected: int
    confirmed_defects: int
    false_rejects: int
    escapes_found: int
    score_histogram: tuple[int, ...]
    brightness_histogram: tuple[int, ...]

    @property
    def false_reject_rate(self) -> float | None:
        """Good parts rejected / good parts seen. Good parts = inspected - confirmed defects - escapes."""
        good = self.inspected - self.confirmed_defects - self.escapes_found
        return self.false_rejects / good if good > 0 else None

    @property
    def escape_rate(self) -> float | None:
        """Defective parts passed / defective parts seen (confirmed at the line or found at audit)."""
        defective = self.confirmed_defects + self.escapes_found
        return self.escapes_found / defective if defective > 0 else None


def sum_windows(windows: Iterable[Mapping]) -> WindowTotals:
    rows = list(windows)
    def total(key: str) -> int:
        return int(sum(int(w[key]) for w in rows))

    def histogram(key: str) -> tuple[int, ...]:
        if not rows:
            return ()
        width = len(rows[0][key])
        return tuple(int(sum(int(w[key][i]) for w in rows)) for i in range(width))

    return WindowTotals(
        inspected=total("inspected"),
        rejected=total("rejected"),
        confirmed_defects=total("confirmed_defects"),
        false_rejects=total("false_rejects"),
        escapes_found=total("escapes_found"),
        score_histogram=histogram("score_histogram"),
        brightness_histogram=histogram("input_brightness_histogram"),
    )


def population_stability_index(expected: Sequence[int], actual: Sequence[int], *, floor: float = 1e-4) -> float:
    """PSI between two histograms over the same bins (0.1: moderate shift, 0.25: large shift).

    Empty bins get ``floor`` probability so the logarithm stays finite.
    """
    if len(expected) != len(actual):
        raise ValueError(f"histograms have {len(expected)} and {len(actual)} bins; they must match")
    total_e, total_a = sum(expected), sum(actual)
    if total_e <= 0 or total_a <= 0:
        raise ValueError("PSI needs two non-empty histograms")
    psi = 0.0
    for e, a in zip(expected, actual, strict=True):
        pe = max(e / total_e, floor)
        pa = max(a / total_a, floor)
        psi += (pa - pe) * math.log(pa / pe)
    return psi


@dataclass(frozen=True)
class HealthThresholds:
    min_inspected: int = 100  # fewer parts than this: too little evidence to act on
    max_false_reject_rate: float = 0.05
    max_escape_rate: float = 0.0
    max_score_psi: float = 0.25
    max_brightness_psi: float = 0.25


@dataclass(frozen=True)
class HealthVerdict:
    action: str  # "wait" | "healthy" | "degraded"
    reasons: tuple[str, ...]
    metrics: dict[str, float | int | None]


def assess_health(
    totals: WindowTotals,
    *,
    baseline_scores: Sequence[int] | None,
    baseline_brightness: Sequence[int] | None,
    thresholds: HealthThresholds = HealthThresholds(),
) -> HealthVerdict:
    """Is a model healthy on the line, from the summed windows since it was activated?"""
    metrics: dict[str, float | int | None] = {
        "inspected": totals.inspected,
        "false_reject_rate": totals.false_reject_rate,
        "escape_rate": totals.escape_rate,
        "score_psi": None,
        "brightness_psi": None,
    }
    if totals.inspected < thresholds.min_inspected:
        return HealthVerdict(
            "wait", (f"{totals.inspected} parts inspected, fewer than {thresholds.min_inspected}",), metrics
        )
    reasons: list[str] = []
    frr, escape = totals.false_reject_rate, totals.escape_rate
    if frr is not None and frr > thresholds.max_false_reject_rate:
        reasons.append(f"false-reject rate {frr:.3f} > {thresholds.max_false_reject_rate}")
    if escape is not None and escape > thresholds.max_escape_rate:
        reasons.append(f"escape rate {escape:.3f} > {thresholds.max_escape_rate}")
    if baseline_scores and any(totals.score_histogram):
        metrics["score_psi"] = psi = population_stability_index(baseline_scores, totals.score_histogram)
        if psi > thresholds.max_score_psi:
            reasons.append(f"defect-score distribution shifted (PSI {psi:.2f} > {thresholds.max_score_psi})")
    if baseline_brightness and any(totals.brightness_histogram):
        metrics["brightness_psi"] = psi = population_stability_index(baseline_brightness, totals.brightness_histogram)
        if psi > thresholds.max_brightness_psi:
            reasons.append(f"input brightness shifted (PSI {psi:.2f} > {thresholds.max_brightness_psi})")
    return HealthVerdict("degraded" if reasons else "healthy", tuple(reasons), metrics)


@dataclass(frozen=True)
class LiveDeployment:
    """A deployment that is live now on a line's ring, with the baseline it is judged against."""

    deployment_id: str
    partition: str
    line: str
    model_version: str
    ring: str  # canary | fleet
    deployed_at: str  # ISO time; only windows received after it count
    baseline_scores: tuple[int, ...]
    baseline_brightness: tuple[int, ...]


@dataclass(frozen=True)
class EdgeAction:
    kind: str  # "retrain" | "promote" | "rollback"
    partition: str
    line: str
    model_version: str
    deployment_id: str
    run_key: str
    reasons: tuple[str, ...]


def plan_edge_actions(
    live: Iterable[LiveDeployment],
    windows: Iterable[Mapping],
    thresholds: HealthThresholds = HealthThresholds(),
) -> tuple[list[EdgeAction], dict[str, HealthVerdict]]:
    """What the loop does next for each live deployment, from the windows its devices uploaded.

    Fleet degraded → retrain (one request per deployment: the run key names it). Canary healthy
    with enough evidence → promote to the fleet; canary degraded → roll it back. Windows count only
    when they are of the deployment's model version, its line, and received after it went live.
    """
    rows = list(windows)
    actions: list[EdgeAction] = []
    verdicts: dict[str, HealthVerdict] = {}
    for deployment in live:
        mine = [
            w
            for w in rows
            if w["line"] == deployment.line
            and w["model_version"] == deployment.model_version
            and str(w["received_at"]) >= deployment.deployed_at
        ]
        verdict = assess_health(
            sum_windows(mine),
            baseline_scores=deployment.baseline_scores,
            baseline_brightness=deployment.baseline_brightness,
            thresholds=thresholds,
        )
        verdicts[deployment.deployment_id] = verdict
        kind = None
        if deployment.ring == "fleet" and verdict.action == "degraded":
            kind = "retrain"
        elif deployment.ring == "canary" and verdict.action == "healthy":
            kind = "promote"
        elif deployment.ring == "canary" and verdict.action == "degraded":
            kind = "rollback"
        if kind:
            actions.append(
                EdgeAction(
                    kind=kind,
                    partition=deployment.partition,
                    line=deployment.line,
                    model_version=deployment.model_version,
                    deployment_id=deployment.deployment_id,
                    run_key=f"{kind}:{deployment.deployment_id}",
                    reasons=verdict.reasons or ("canary window healthy",),
                )
            )
    return actions, verdicts
