"""Problems found by validation, collected (not raised one at a time) into one report."""

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional

__all__ = ["Problem", "ValidationReport", "ValidationError", "DatasetCounts"]


@dataclass(frozen=True)
class Problem:
    """One thing found in the input.

    Attributes:
        kind: a short category, e.g. "unknown-key", "group-count", "bbox", "image-size"; dataset
            kinds are the rows of gn_det/validation/policy.py.
        where: what it is, precisely enough to find it: a config key and its file, or a dataset
            file with image id / annotation id, or a checkpoint path.
        message: what is wrong and what would be valid.
        outcome: what was done: "error" (the run does not start), "warning" (the record is used
            as it is), "repair" (the record was changed, see ``repair``) or "drop" (the record
            was left out).
        repair: what was changed ("" if nothing).
        dropped: an error whose record ``--skip-invalid`` left out.
    """

    kind: str
    where: str
    message: str
    outcome: str = "error"
    repair: str = ""
    dropped: bool = False

    @property
    def level(self) -> str:
        """"error" for what stops the run (unless dropped), "warning" for what goes on."""
        return "error" if self.outcome == "error" else "warning"

    def __str__(self) -> str:
        return (
            f"{self.where}: {self.message}"
            + (f" [repaired: {self.repair}]" if self.repair else "")
            + (" [dropped]" if self.outcome == "drop" or self.dropped else "")
        )


@dataclass
class DatasetCounts:
    """How a dataset's records ended: ``annotations_in == kept + repaired + dropped + refused``
    (and the same for images). Refused records stop the run; ``--skip-invalid`` drops them."""

    annotations_in: int = 0
    annotations_repaired: int = 0
    annotations_dropped: int = 0
    images_in: int = 0
    images_repaired: int = 0
    images_dropped: int = 0
    # records refused (those with errors, and the annotations of refused images): what
    # --skip-invalid would drop
    skippable_images: int = 0
    skippable_annotations: int = 0
    dropped_by_kind: Dict[str, int] = field(default_factory=dict)

    @property
    def annotations_kept(self) -> int:
        return self.annotations_in - self.annotations_repaired - self.annotations_dropped - self.skippable_annotations

    @property
    def images_kept(self) -> int:
        return self.images_in - self.images_repaired - self.images_dropped - self.skippable_images

    def describe(self) -> str:
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(self.dropped_by_kind.items(), key=lambda kv: -kv[1]))
        return (
            f"{self.annotations_in} annotations = {self.annotations_kept} as they are + "
            f"{self.annotations_repaired} repaired + {self.annotations_dropped} dropped"
            + (f" ({kinds})" if kinds else "")
            + (f" + {self.skippable_annotations} refused" if self.skippable_annotations else "")
            + f"; {self.images_in} images = {self.images_kept} as they are + {self.images_repaired} repaired + "
            f"{self.images_dropped} dropped"
            + (f" + {self.skippable_images} refused" if self.skippable_images else "")
        )


@dataclass
class ValidationReport:
    """Every problem found, and per dataset how its records ended.

    ``ok`` is True when nothing blocks training: no errors other than records dropped by
    ``--skip-invalid``; warnings, repairs and drops never block it.
    """

    problems: List[Problem] = field(default_factory=list)
    counts: Dict[str, DatasetCounts] = field(default_factory=dict)
    # dataset name -> path of the repaired / cleaned json training reads
    cleaned_datasets: Dict[str, str] = field(default_factory=dict)
    checked: List[str] = field(default_factory=list)
    # where the full report was written (set by the tools), named in the summary
    report_path: str = ""
    # the merged config validate() built (None when it could not be built); not serialized
    cfg: Optional[Any] = field(default=None, repr=False, compare=False)

    def add(self, kind: str, where: str, message: str, dropped: bool = False, level: str = "error",
            repair: str = "", outcome: Optional[str] = None) -> Problem:
        """Add a problem; ``level`` "error" / "warning" (config and checkpoint checks) or, for
        dataset findings, ``outcome`` (policy.py)."""
        if level not in ("error", "warning"):
            raise ValueError(f"level must be 'error' or 'warning', got {level!r}")
        problem = Problem(kind, where, message, outcome or level, repair, dropped)
        self.problems.append(problem)
        return problem

    def extend(self, other: "ValidationReport") -> None:
        self.problems.extend(other.problems)
        self.counts.update(other.counts)
        self.cleaned_datasets.update(other.cleaned_datasets)
        self.checked.extend(other.checked)

    @property
    def errors(self) -> List[Problem]:
        return [p for p in self.problems if p.outcome == "error" and not p.dropped]

    @property
    def warnings(self) -> List[Problem]:
        """Everything reported that does not stop the run: warnings, repairs, drops."""
        return [p for p in self.problems if p.outcome != "error"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def _way_forward(self) -> List[str]:
        lines = []
        for name, c in self.counts.items():
            if c.skippable_images or c.skippable_annotations:
                lines.append(
                    f"To train {name} without the records refused above, add --skip-invalid: it drops "
                    f"{c.skippable_annotations} annotation(s) and {c.skippable_images} image(s) (with "
                    "their annotations), each listed in the report, and trains on the rest."
                )
        file_level = sorted({p.kind for p in self.errors if _file_level(p.kind)})
        if file_level:
            lines.append(f"Problems of kind {', '.join(file_level)} concern a file or the config as a "
                         "whole: --skip-invalid cannot drop them; fix them as each message says.")
        return lines

    def format(self, max_per_kind: Optional[int] = None) -> str:
        """Human-readable report: errors, dropped and repaired records, warnings, the counts, then
        the verdict (and, when it failed, how to go on).

        ``max_per_kind`` caps the lines printed per kind; the counts stay exact.
        """
        lines = []
        dropped = [p for p in self.problems if p.dropped or p.outcome == "drop"]
        for title, problems in (
            ("Problems", self.errors),
            ("Dropped", dropped),
            ("Repaired", [p for p in self.problems if p.outcome == "repair"]),
            ("Warnings", [p for p in self.problems if p.outcome == "warning"]),
        ):
            if not problems:
                continue
            lines.append(f"{title} ({len(problems)}):")
            shown, hidden = Counter(), Counter()
            for p in problems:
                if max_per_kind is not None and shown[p.kind] >= max_per_kind:
                    hidden[p.kind] += 1
                    continue
                shown[p.kind] += 1
                lines.append(f"  - [{p.kind}] {p}")
            for kind, n in sorted(hidden.items()):
                lines.append(f"  ... and {n} more [{kind}] (see the full report file)")
        lines += self._dataset_lines()
        if self.ok:
            lines.append(
                f"Validation passed ({len(self.checked)} checks"
                + (f", {len(self.warnings)} finding(s) reported" if self.warnings else "")
                + ")"
            )
        else:
            kinds = Counter(p.kind for p in self.errors)
            lines.append(
                f"Validation FAILED: {len(self.errors)} problem(s) ("
                + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
                + ")"
            )
            lines += self._way_forward()
        return "\n".join(lines)

    def _dataset_lines(self) -> List[str]:
        lines = [f"{name}: {c.describe()}" for name, c in self.counts.items()
                 if c.annotations_repaired or c.annotations_dropped or c.images_dropped or c.images_repaired
                 or c.skippable_annotations or c.skippable_images]
        lines += [f"dataset {name} reads the repaired / cleaned copy {path}"
                  for name, path in self.cleaned_datasets.items()]
        return lines

    def summary(self, examples: int = 3, width: int = 240) -> str:
        """The few lines a run that goes on prints: counts by outcome and kind, ``examples``
        examples, each dataset's counts, which datasets read a repaired copy, the full list."""
        lines = []
        for outcome, title in (("drop", "dropped"), ("repair", "repaired"), ("warning", "warning(s)")):
            problems = [p for p in self.problems if p.outcome == outcome or (outcome == "drop" and p.dropped)]
            if not problems:
                continue
            kinds = Counter(p.kind for p in problems)
            lines.append(f"{len(problems)} {title}: " + ", ".join(
                f"{n} {k}" for k, n in sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0]))))
            firsts = {}
            for p in problems:
                firsts.setdefault(p.kind, p)
            for p in sorted(firsts.values(), key=lambda p: -kinds[p.kind])[:examples]:
                text = f"[{p.kind}] {p}"
                lines.append("  e.g. " + (text if len(text) <= width else text[: width - 3] + "..."))
        lines += self._dataset_lines()
        if self.report_path:
            lines.append(f"full list: {self.report_path}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "problems": [dict(asdict(p), level=p.level) for p in self.problems],
            "counts": {name: dict(asdict(c), annotations_kept=c.annotations_kept, images_kept=c.images_kept)
                       for name, c in self.counts.items()},
            "cleaned_datasets": self.cleaned_datasets,
            "checked": self.checked,
        }

    def write_json(self, path: str) -> None:
        with open(path, "w") as f:
            json.dump(self.to_dict(), f, indent=1)

    def raise_if_failed(self) -> None:
        if not self.ok:
            raise ValidationError(self)


def _file_level(kind: str) -> bool:
    from .policy import RULES

    return kind in RULES and RULES[kind].file_level


class ValidationError(ValueError):
    """Raised when validation found problems; ``.report`` holds all of them."""

    def __init__(self, report: ValidationReport, max_per_kind: Optional[int] = 20):
        self.report = report
        super().__init__("\n" + report.format(max_per_kind=max_per_kind))
