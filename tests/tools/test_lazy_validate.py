"""gn-det-validate on a LazyConfig (.py): it loads with the overrides and its model builds, or
the problem is named; a YAML config is still checked by the YAML validation."""
import pytest

from gn_det.cli.validate import main as validate_main
from gn_det.engine.lazy_train import lazy_config_problems

CONFIG = "Synthetic/mask_rcnn_R_18_FPN_gn_scratch.py"


def test_a_py_config_that_builds_passes(capsys):
    assert validate_main(["--config-file", CONFIG, "train.max_iter=10"]) == 0
    assert "its model builds" in capsys.readouterr().out


@pytest.mark.parametrize(
    "override, named",
    [
        ("model.backbone.bottom_up.depth=7", "depth=7 is not supported"),
        ("model.roi_heads.box_head.conv_norm=GroupNorm", "Unknown norm 'GroupNorm' for GNConvFCHead.conv_norm"),
        ("model.backbone.no_such_key.depth=1", "does not build"),
    ],
)
def test_a_py_config_whose_model_cannot_build_fails_and_names_why(override, named, capsys):
    assert validate_main(["--config-file", CONFIG, override]) == 1
    assert named in capsys.readouterr().out


def test_a_file_that_is_not_a_lazy_trainer_config_is_named(tmp_path):
    config = tmp_path / "model_only.py"
    config.write_text("from gn_det import model_zoo\nmodel = model_zoo.get_config('common/models/mask_rcnn_fpn_gn.py').model\n")
    problems = lazy_config_problems(str(config))
    assert any("defines no 'train'" in p for p in problems)
    assert not any("does not build" in p or "defines no 'model'" in p for p in problems)
