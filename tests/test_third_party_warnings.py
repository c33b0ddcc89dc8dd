"""The one list of silenced third-party warnings: it silences exactly what it lists."""
import subprocess
import sys
import warnings

import logging

from gn_det.third_party_warnings import (
    THIRD_PARTY_LOG_WARNINGS,
    THIRD_PARTY_WARNINGS,
    ignore_third_party_warnings,
    pytest_filter_lines,
)


def test_listed_warnings_are_silenced_and_others_are_not():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ignore_third_party_warnings()
        warnings.warn("`broadcast_buffers` is deprecated. Use `forward_sync_buffers` instead.", FutureWarning)
        warnings.warn("torch.meshgrid: in an upcoming release, it will be required to pass the indexing argument.")
        warnings.warn("gn_det: something of our own", UserWarning)
    assert [str(w.message) for w in caught] == ["gn_det: something of our own"]


def test_every_entry_says_who_warns_and_why():
    assert all(len(why) > 20 for _, _, why in THIRD_PARTY_WARNINGS)
    assert len(pytest_filter_lines()) == len(THIRD_PARTY_WARNINGS)
    assert all(line.count(":") == 2 for line in pytest_filter_lines())  # pytest's field separator


def test_importing_gn_det_changes_no_warning_filter():
    code = (
        "import warnings, torch, torchvision, detectron2.modeling, detectron2.engine, pycocotools.mask, cv2\n"
        "before = list(warnings.filters)\n"  # what torch and numpy install on their own import
        "import gn_det\n"
        "print([f for f in warnings.filters if f not in before])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_detectron2s_is_fx_tracing_log_line_is_dropped_and_other_records_are_not():
    # Detectron2's ROIPooler calls torch.fx's is_fx_tracing(), which logs a warning once per
    # process; the same logger's other records still come through.
    name, prefix, _ = THIRD_PARTY_LOG_WARNINGS[0]
    ignore_third_party_warnings()
    ignore_third_party_warnings()  # idempotent: one filter
    logger = logging.getLogger(name)
    assert len(logger.filters) == 1
    collect = _Collect()  # on the logger itself: torch's loggers may not propagate to the root
    logger.addHandler(collect)
    try:
        logger.warning(prefix + " fx.symbolic_trace and torch.export.")
        logger.warning("another torch.fx warning")
    finally:
        logger.removeHandler(collect)
    assert collect.messages == ["another torch.fx warning"]
