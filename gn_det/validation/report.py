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
    """

    kind: str
    where: str
    message: str
    dropped: bool = False

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" + (" [dropped]" if self.dropped else "")


@dataclass
class ValidationReport:
    """Every problem found, plus what ``--skip-invalid`` dropped per dataset.

    ``ok`` is True when nothing blocks training: no problems, or only dropped records.
    """

    problems: List[Problem] = field(default_factory=list)
    # dataset name (or json path) -> {"images": n, "annotations": m, ...} dropped by --skip-invalid
    dropped: Dict[str, Dict[str, int]] = field(default_factory=dict)
    # dataset name -> path of the cleaned json written under --skip-invalid
    cleaned_datasets: Dict[str, str] = field(default_factory=dict)
    checked: List[str] = field(default_factory=list)
    # the merged config validate() built (None when it could not be built); not serialized
    cfg: Optional[Any] = field(default=None, repr=False, compare=False)

    def add(self, kind: str, where: str, message: str, dropped: bool = False) -> Problem:
        problem = Problem(kind, where, message, dropped)
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
        return [p for p in self.problems if not p.dropped]

    @property
    def ok(self) -> bool:
        return not self.errors

    def format(self, max_per_kind: Optional[int] = None) -> str:
        """Human-readable report: failures first, then dropped records, then the summary.

        ``max_per_kind`` caps the lines printed per (kind, dropped) group; the counts stay exact.
        """
        lines = []
        for title, problems in (
            ("Problems", self.errors),
            ("Dropped by --skip-invalid", [p for p in self.problems if p.dropped]),
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
            lines.append(f"Dataset {name} now reads the cleaned file {path}")
        if self.ok:
            lines.append(
                f"Validation passed ({len(self.checked)} checks"
                + (", with dropped records)" if self.problems else ")")
            )
        else:
            kinds = Counter(p.kind for p in self.errors)
            lines.append(
                f"Validation FAILED: {len(self.errors)} problem(s) ("
                + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
                + ")"
            )
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
