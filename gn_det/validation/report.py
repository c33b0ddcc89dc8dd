"""Problems found by validation, collected (not raised one at a time) into one report."""

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional

__all__ = ["Problem", "ValidationReport", "ValidationError"]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input.

    Attributes:
        kind: a short category, e.g. "unknown-key", "group-count", "bbox", "image-size".
        where: what is wrong, precisely enough to find it: a config key and its file, or a dataset
            file with image id / annotation id, or a checkpoint path.
        message: what is wrong and what would be valid.
        dropped: True when ``--skip-invalid`` removed the record instead of failing.
        level: "error" (the run does not start) or "warning" (reported, the run goes on); the
            policy is gn_det/validation/policy.py.
        repair: what was changed in the record when the dataset is loaded ("" if nothing).
    """

    kind: str
    where: str
    message: str
    dropped: bool = False
    level: str = "error"
    repair: str = ""

    def __str__(self) -> str:
        return (
            f"{self.where}: {self.message}"
            + (f" [repaired: {self.repair}]" if self.repair else "")
            + (" [dropped]" if self.dropped else "")
        )


@dataclass
class ValidationReport:
    """Every problem found, plus what ``--skip-invalid`` dropped per dataset.

    ``ok`` is True when nothing blocks training: no errors, or only dropped records; warnings
    never block it.
    """

    problems: List[Problem] = field(default_factory=list)
    # dataset name (or json path) -> {"images": n, "annotations": m, ...} dropped by --skip-invalid
    dropped: Dict[str, Dict[str, int]] = field(default_factory=dict)
    # dataset name -> path of the cleaned json written under --skip-invalid
    cleaned_datasets: Dict[str, str] = field(default_factory=dict)
    checked: List[str] = field(default_factory=list)
    # where the full report was written (set by the tools), named in the summary
    report_path: str = ""
    # the merged config validate() built (None when it could not be built); not serialized
    cfg: Optional[Any] = field(default=None, repr=False, compare=False)

    def add(
        self,
        kind: str,
        where: str,
        message: str,
        dropped: bool = False,
        level: str = "error",
        repair: str = "",
    ) -> Problem:
        if level not in ("error", "warning"):
            raise ValueError(f"level must be 'error' or 'warning', got {level!r}")
        problem = Problem(kind, where, message, dropped, level, repair)
        self.problems.append(problem)
        return problem

    def extend(self, other: "ValidationReport") -> None:
        self.problems.extend(other.problems)
        for name, counts in other.dropped.items():
            self.dropped.setdefault(name, {}).update(counts)
        self.cleaned_datasets.update(other.cleaned_datasets)
        self.checked.extend(other.checked)

    @property
    def errors(self) -> List[Problem]:
        return [p for p in self.problems if p.level == "error" and not p.dropped]

    @property
    def warnings(self) -> List[Problem]:
        return [p for p in self.problems if p.level == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def format(self, max_per_kind: Optional[int] = None) -> str:
        """Human-readable report: errors first, then dropped records, warnings, the summary.

        ``max_per_kind`` caps the lines printed per (kind, dropped) group; the counts stay exact.
        """
        lines = []
        for title, problems in (
            ("Problems", self.errors),
            ("Dropped by --skip-invalid", [p for p in self.problems if p.dropped]),
            ("Warnings (the run goes on)" if self.ok else "Warnings", self.warnings),
        ):
            if not problems:
                continue
            lines.append(f"{title} ({len(problems)}):")
            shown = Counter()
            hidden = Counter()
            for p in problems:
                if max_per_kind is not None and shown[p.kind] >= max_per_kind:
                    hidden[p.kind] += 1
                    continue
                shown[p.kind] += 1
                lines.append(f"  - [{p.kind}] {p}")
            for kind, n in sorted(hidden.items()):
                lines.append(f"  ... and {n} more [{kind}] (see the full report file)")
        for name, counts in self.dropped.items():
            summary = ", ".join(f"{n} {what}" for what, n in counts.items())
            lines.append(f"Dropped from {name}: {summary}")
        for name, path in self.cleaned_datasets.items():
            lines.append(f"Dataset {name} now reads the cleaned/repaired file {path}")
        if self.ok:
            dropped = any(p.dropped for p in self.problems)
            lines.append(
                f"Validation passed ({len(self.checked)} checks"
                + (", with dropped records" if dropped else "")
                + (f", {len(self.warnings)} warning(s)" if self.warnings else "")
                + ")"
            )
        else:
            kinds = Counter(p.kind for p in self.errors)
            lines.append(
                f"Validation FAILED: {len(self.errors)} problem(s) ("
                + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
                + ")"
            )
        return "\n".join(lines)

    def summary(self, examples: int = 3, width: int = 240) -> str:
        """The few lines a run that goes on prints: counts by kind (errors dropped under
        --skip-invalid, warnings with their repair), ``examples`` examples, which datasets read
        a repaired or cleaned copy, and where the full list is."""
        lines = []
        dropped = [p for p in self.problems if p.dropped]
        for title, problems in (
            ("dropped by --skip-invalid", dropped),
            ("warning(s)", self.warnings),
        ):
            if not problems:
                continue
            kinds = Counter(p.kind for p in problems)
            parts = []
            for kind, n in sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0])):
                repaired = any(p.repair for p in problems if p.kind == kind)
                parts.append(f"{n} {kind}" + (" (repaired)" if repaired else ""))
            lines.append(f"{len(problems)} {title}: " + ", ".join(parts))
            # one example of each of the most frequent kinds
            firsts = {}
            for p in problems:
                firsts.setdefault(p.kind, p)
            ordered = sorted(firsts.values(), key=lambda p: -kinds[p.kind])
            for p in ordered[:examples]:
                text = f"[{p.kind}] {p}"
                lines.append(
                    "  e.g. " + (text if len(text) <= width else text[: width - 3] + "...")
                )
        for name, counts in self.dropped.items():
            lines.append(
                f"Dropped from {name}: " + ", ".join(f"{n} {what}" for what, n in counts.items())
            )
        for name, path in self.cleaned_datasets.items():
            lines.append(f"dataset {name} reads the repaired/cleaned copy {path}")
        if self.report_path:
            lines.append(f"full list: {self.report_path}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "problems": [asdict(p) for p in self.problems],
            "dropped": self.dropped,
            "cleaned_datasets": self.cleaned_datasets,
            "checked": self.checked,
        }

    def write_json(self, path: str) -> None:
        with open(path, "w") as f:
            json.dump(self.to_dict(), f, indent=1)

    def raise_if_failed(self) -> None:
        if not self.ok:
            raise ValidationError(self)


class ValidationError(ValueError):
    """Raised when validation found problems; ``.report`` holds all of them."""

    def __init__(self, report: ValidationReport, max_per_kind: Optional[int] = 20):
        self.report = report
        super().__init__("\n" + report.format(max_per_kind=max_per_kind))
