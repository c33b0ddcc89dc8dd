"""Shared test settings: deterministic CPU runs on a small (2-core) machine."""
import os
import sys

# Test folders mirror the package; the shared helpers (modeling_helpers, tiny_run) live here.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

# One thread: on a small shared machine, oversubscribed OpenMP threads make conv-heavy tests
# many times slower (measured: 27 small model builds+steps took 23 s at 1 thread, 4.4 min at 2).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


def pytest_configure(config):
    # Known-harmless third-party warnings: the one list is gn_det/third_party_warnings.py.
    from gn_det.third_party_warnings import pytest_filter_lines

    for line in pytest_filter_lines():
        config.addinivalue_line("filterwarnings", line)
