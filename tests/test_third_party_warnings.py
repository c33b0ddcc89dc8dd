"""The one list of silenced third-party warnings: it silences exactly what it lists."""
import subprocess
import sys
import warnings

from gn_det.third_party_warnings import THIRD_PARTY_WARNINGS, ignore_third_party_warnings, pytest_filter_lines


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
