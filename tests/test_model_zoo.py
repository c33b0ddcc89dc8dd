"""gn_det.model_zoo: the configs as the package holds them, found by name from any directory,
read as Detectron2's model_zoo reads its own (a CfgNode for YAML, a LazyConfig for .py)."""
import os
from pathlib import Path

import pytest
from detectron2.config import CfgNode
from omegaconf import DictConfig

from gn_det import model_zoo

REPO = Path(__file__).resolve().parents[1]
SYNTHETIC_YAML = "Synthetic/mask_rcnn_R_18_FPN_gn_scratch.yaml"
SYNTHETIC_PY = "Synthetic/mask_rcnn_R_18_FPN_gn_scratch.py"


def test_the_repositorys_configs_directory_is_the_packages():
    # Every existing configs/... path (docs, tests, users' scripts) reads the installed files.
    assert (REPO / "configs").resolve() == model_zoo.configs_dir().resolve()
    assert model_zoo.configs_dir().resolve() == (REPO / "gn_det" / "configs").resolve()


def test_list_configs_names_every_yaml_and_py_file_once():
    on_disk = sorted(
        p.relative_to(REPO / "configs").as_posix()
        for p in (REPO / "configs").rglob("*")
        if p.suffix in (".yaml", ".py") and "__pycache__" not in p.parts
    )
    names = model_zoo.list_configs()
    assert names == on_disk
    assert "Base-GN-RCNN-FPN.yaml" in names and SYNTHETIC_PY in names
    assert "new_baselines/mask_rcnn_R_50_FPN_100ep_LSJ_gn.py" in names


def test_yaml_config_is_a_cfgnode_with_gn_dets_keys_and_the_files_values():
    cfg = model_zoo.get_config(SYNTHETIC_YAML)
    assert isinstance(cfg, CfgNode)
    assert cfg.MODEL.GN.NUM_GROUPS == 32  # add_gn_config ran before the merge
    assert cfg.MODEL.RESNETS.DEPTH == 18 and cfg.MODEL.FPN.NORM == "GN"  # _BASE_ and the file


def test_py_config_is_a_lazyconfig_with_what_detectron2s_lazy_trainer_reads():
    cfg = model_zoo.get_config(SYNTHETIC_PY)
    assert isinstance(cfg, DictConfig)
    assert {"model", "dataloader", "optimizer", "lr_multiplier", "train"} <= set(cfg)
    assert cfg.model.backbone.bottom_up.depth == 18


def test_a_leading_configs_prefix_names_the_same_file():
    assert model_zoo.get_config_file("configs/" + SYNTHETIC_YAML) == model_zoo.get_config_file(SYNTHETIC_YAML)


@pytest.mark.parametrize("name", ["Synthetic/mask_rcnn_R_18_FPN_gn_scratchh.yaml", "Synthetic", "README.md"])
def test_an_unknown_name_is_an_error_that_names_it_and_the_closest_configs(name):
    with pytest.raises(FileNotFoundError, match="is not one of gn_det's configs") as e:
        model_zoo.get_config_file(name)
    assert repr(name) in str(e.value)
    if name.endswith("scratchh.yaml"):
        assert SYNTHETIC_YAML in str(e.value)


def test_a_local_file_wins_over_an_installed_config_of_the_same_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert model_zoo.resolve_config_file(SYNTHETIC_YAML) == model_zoo.get_config_file(SYNTHETIC_YAML)
    local = tmp_path / "Synthetic" / "mask_rcnn_R_18_FPN_gn_scratch.yaml"
    local.parent.mkdir()
    local.write_text("MODEL:\n  DEVICE: cpu\n")
    assert model_zoo.resolve_config_file(SYNTHETIC_YAML) == SYNTHETIC_YAML
    assert model_zoo.resolve_config_file("") == ""


def test_config_file_argument_leaves_unknown_paths_to_the_runs_checks(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        model_zoo.resolve_config_file("missing.yaml")
    # As an argparse type it never fails: validation reports a missing file with every other problem.
    assert model_zoo.config_file_argument("missing.yaml") == "missing.yaml"
    assert model_zoo.config_file_argument(SYNTHETIC_PY) == model_zoo.get_config_file(SYNTHETIC_PY)
    assert os.path.isabs(model_zoo.config_file_argument(SYNTHETIC_PY))
