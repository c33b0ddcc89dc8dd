"""Config validation: unknown keys, registered names, the model built on the meta device (group
counts vs channels: the builders' own errors), batch size, dataset names; every problem in one
report, each naming the key and where it came from."""

import os

import pytest
from detectron2.config import get_cfg

import gn_det  # noqa: F401  (registers gn_det's modules)
from gn_det import add_gn_config
from gn_det.validation import check_config, check_config_sources, validate


def _yaml(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _base_cfg():
    cfg = get_cfg()
    add_gn_config(cfg)
    return cfg


def _problems(report, kind):
    return [p for p in report.problems if p.kind == kind]


def test_unknown_keys_in_yaml_base_and_overrides_are_all_named_with_file_and_line(tmp_path):
    base = _yaml(tmp_path, "base.yaml", "MODEL:\n  FPN:\n    NROM: GN\n")
    child = _yaml(
        tmp_path,
        "child.yaml",
        "_BASE_: base.yaml\nMODEL:\n  RESNETS:\n    DEPTH: 50\n  NORM: GN\nSOLVER:\n  BASE_LRR: 0.01\n",
    )
    # Detectron2 itself stops at the first one with a bare KeyError.
    with pytest.raises(KeyError, match="Non-existent config key"):
        _base_cfg().merge_from_file(child)
    cfg, report = check_config_sources(child, ["MODEL.GN.NUM_GRUOPS", "16"])
    unknown = _problems(report, "unknown-key")
    assert [p.where for p in unknown] == [
        f"{base}:3",
        f"{child}:5",
        f"{child}:7",
        "command-line override MODEL.GN.NUM_GRUOPS",
    ]
    assert (
        "MODEL.FPN.NROM" in unknown[0].message
        and "did you mean MODEL.FPN.NORM?" in unknown[0].message
    )
    assert "MODEL.RESNETS.NORM" in unknown[1].message  # "a key with this name exists at ..."
    assert "did you mean SOLVER.BASE_LR " in unknown[2].message
    assert "did you mean MODEL.GN.NUM_GROUPS" in unknown[3].message
    # The good keys were still applied, so the later checks see them.
    assert cfg.MODEL.RESNETS.DEPTH == 50


def test_wrong_value_type_is_named(tmp_path):
    path = _yaml(tmp_path, "c.yaml", "SOLVER:\n  MAX_ITER: fast\n")
    _, report = check_config_sources(path, [])
    [problem] = report.problems
    assert problem.kind == "config-type" and problem.where == f"{path}:2"
    assert "SOLVER.MAX_ITER='fast'" in problem.message and "expected int" in problem.message


def test_valid_sources_build_the_same_config_as_detectron2(tmp_path):
    path = _yaml(
        tmp_path,
        "c.yaml",
        "MODEL:\n  RESNETS:\n    NORM: GN\n  FPN:\n    NORM: GN\nSOLVER:\n  BASE_LR: 1e-3\n",
    )
    cfg, report = check_config_sources(path, ["SOLVER.MAX_ITER", "7"])
    assert report.ok, report.format()
    expected = _base_cfg()
    expected.merge_from_file(path)
    expected.merge_from_list(["SOLVER.MAX_ITER", "7"])
    assert cfg.dump() == expected.dump()


def test_detectron2_gn_of_32_groups_not_dividing_channels_is_found_by_building_the_model():
    from detectron2 import model_zoo

    cfg = _base_cfg()
    cfg.merge_from_file(model_zoo.get_config_file("Base-RCNN-FPN.yaml"))
    cfg.MODEL.FPN.NORM = "GN"
    cfg.MODEL.FPN.OUT_CHANNELS = 200
    cfg.MODEL.BACKBONE.NAME = "build_resnet_fpn_backbone"
    [problem] = _problems(check_config(cfg), "model-build")
    assert "num_channels (200) must be divisible by num_groups (32)" in problem.message
    assert "Detectron2's own 'GN' is 32 groups" in problem.message and "fpn.py" in problem.message


def test_a_builders_bare_assert_is_quoted():
    cfg = _base_cfg()
    cfg.MODEL.BACKBONE.NAME = "build_resnet_fpn_backbone"  # Detectron2's defaults: FPN.IN_FEATURES []
    [problem] = _problems(check_config(cfg), "model-build")
    assert "`assert in_features, in_features` failed" in problem.message and "fpn.py" in problem.message


def test_unknown_norm_name():
    cfg = _base_cfg()
    cfg.MODEL.BACKBONE.NAME = "build_gn_resnet_fpn_backbone"
    cfg.MODEL.FPN.NORM = "GroupNorm"
    [problem] = _problems(check_config(cfg), "model-build")
    assert "Unknown norm 'GroupNorm' for MODEL.FPN.NORM" in problem.message and "'GN'" in problem.message


def test_unregistered_names_list_the_valid_ones():
    cfg = _base_cfg()
    cfg.MODEL.BACKBONE.NAME = "build_resnet_fpn_backbon"
    cfg.MODEL.ROI_HEADS.NAME = "StandardROIHeads"
    cfg.MODEL.ROI_BOX_HEAD.NAME = "NoSuchHead"
    cfg.MODEL.RPN.HEAD_NAME = "StandardRPNHeads"
    cfg.MODEL.PROPOSAL_GENERATOR.NAME = "RPN"
    cfg.MODEL.MASK_ON = True
    cfg.MODEL.ROI_MASK_HEAD.NAME = "MaskHead"
    report = check_config(cfg)
    registry = {p.where: p.message for p in _problems(report, "registry")}
    assert set(registry) == {
        "config key MODEL.BACKBONE.NAME",
        "config key MODEL.ROI_BOX_HEAD.NAME",
        "config key MODEL.RPN.HEAD_NAME",
        "config key MODEL.ROI_MASK_HEAD.NAME",
    }
    assert "did you mean 'build_resnet_fpn_backbone'" in registry["config key MODEL.BACKBONE.NAME"]
    assert "StandardRPNHead" in registry["config key MODEL.RPN.HEAD_NAME"]
    assert "FastRCNNConvFCHead" in registry["config key MODEL.ROI_BOX_HEAD.NAME"]
    assert "MaskRCNNConvUpsampleHead" in registry["config key MODEL.ROI_MASK_HEAD.NAME"]


def test_meta_architecture_not_registered():
    cfg = _base_cfg()
    cfg.MODEL.META_ARCHITECTURE = "MaskRCNN"
    [problem] = _problems(check_config(cfg), "registry")
    assert (
        problem.where == "config key MODEL.META_ARCHITECTURE"
        and "GeneralizedRCNN" in problem.message
    )


def test_roi_heads_not_registered():
    cfg = _base_cfg()
    cfg.MODEL.ROI_HEADS.NAME = "StandardROIHead"
    [problem] = _problems(check_config(cfg), "registry")  # its box head name is then not judged
    assert problem.where == "config key MODEL.ROI_HEADS.NAME"
    assert (
        "did you mean 'StandardROIHeads'" in problem.message
        and "CascadeROIHeads" in problem.message
    )


def test_batch_not_divisible_by_processes():
    cfg = _base_cfg()
    cfg.SOLVER.IMS_PER_BATCH = 6
    assert not _problems(check_config(cfg, num_processes=3), "batch-size")
    [problem] = _problems(check_config(cfg, num_processes=4), "batch-size")
    assert problem.where == "config key SOLVER.IMS_PER_BATCH"
    assert (
        "6 images" in problem.message
        and "4 processes" in problem.message
        and "e.g. 4, 8" in problem.message
    )


def test_dataset_not_registered():
    cfg = _base_cfg()
    cfg.DATASETS.TRAIN = ("coco_2017_trian",)
    cfg.DATASETS.TEST = ("coco_2017_val",)
    [problem] = _problems(check_config(cfg), "dataset-name")
    assert problem.where == "config key DATASETS.TRAIN[0]"
    assert (
        "'coco_2017_trian' is not registered" in problem.message
        and "did you mean 'coco_2017_train'" in problem.message
    )


def test_validate_reports_every_problem_at_once(tmp_path):
    path = _yaml(
        tmp_path,
        "c.yaml",
        "MODEL:\n  FPN:\n    NORM: GN\n    OUT_CHANNELS: 200\n  BACKBONE:\n    NAME: build_resnet_fpn_backbone\n",
    )
    report = validate(
        path,
        [
            "MODEL.WEIGTHS",
            "x.pth",
            "SOLVER.IMS_PER_BATCH",
            "5",
            "DATASETS.TRAIN",
            "('nope',)",
            "MODEL.ROI_HEADS.NAME",
            "Nope",
        ],
        num_processes=2,
        check_datasets=False,
    )
    assert not report.ok
    assert sorted(p.kind for p in report.problems) == [
        "batch-size",
        "dataset-name",
        "registry",
        "unknown-key",
    ]  # the model is built only when its names are registered: the group count comes next


CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "configs")


def _gn_det_cfg(name, *opts):
    cfg, report = check_config_sources(
        f"{CONFIGS}/{name}", list(opts) + ["MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu"]
    )
    assert report.ok, report.format()
    return cfg


@pytest.mark.parametrize(
    "name", ["Base-GN-RCNN-FPN.yaml", "COCO-InstanceSegmentation/mask_rcnn_R_50_C4_1x_gn.yaml"]
)
def test_gn_det_configs_build_on_the_meta_device(name):
    cfg = _gn_det_cfg(name, "MODEL.MASK_ON", "True", "MODEL.RPN.NORM", "GN")
    assert check_config(cfg).problems == []


def test_gn_det_group_count_not_dividing_is_the_builders_own_error():
    from detectron2.modeling import build_model

    cfg = _gn_det_cfg("Base-GN-RCNN-FPN.yaml", "MODEL.MASK_ON", "True", "MODEL.GN.NUM_GROUPS", "24")
    [problem] = _problems(check_config(cfg), "model-build")
    with pytest.raises(ValueError) as error:  # what building it for real says
        build_model(cfg)
    assert str(error.value) in problem.message
    assert "MODEL.RESNETS.NORM: num_groups=24 does not divide num_channels=64" in problem.message


def test_per_component_channels_per_group_override_is_named():
    cfg = _gn_det_cfg("Base-GN-RCNN-FPN.yaml", "MODEL.GN.BOX_HEAD.CHANNELS_PER_GROUP", "48")
    [problem] = _problems(check_config(cfg), "model-build")
    assert "MODEL.ROI_BOX_HEAD.NORM: channels_per_group=48 does not divide num_channels=256" in problem.message


def test_resnext_bottleneck_width_is_checked():
    # X-101 32x8d: res2 bottleneck = 32 x 8 = 256 channels; 96 channels per group divides none.
    cfg = _gn_det_cfg(
        "COCO-InstanceSegmentation/scratch_mask_rcnn_X_101_32x8d_FPN_3x_gn.yaml",
        "MODEL.GN.BACKBONE.CHANNELS_PER_GROUP",
        "96",
    )
    [problem] = _problems(check_config(cfg), "model-build")
    assert "channels_per_group=96 does not divide num_channels=" in problem.message


def test_every_wrong_type_is_named_and_the_good_keys_still_apply(tmp_path):
    base = _yaml(tmp_path, "base.yaml", "SOLVER:\n  MAX_ITER: fast\n")
    child = _yaml(
        tmp_path,
        "child.yaml",
        "_BASE_: base.yaml\nSOLVER:\n  BASE_LR: 0.5\n  CHECKPOINT_PERIOD: often\nMODEL:\n  FPN: GN\n",
    )
    cfg, report = check_config_sources(child, ["SOLVER.STEPS", "many"])
    wrong = {p.where: p.message for p in _problems(report, "config-type")}
    assert set(wrong) == {
        f"{base}:2",
        f"{child}:4",
        f"{child}:6",
        "command-line override SOLVER.STEPS",
    }
    assert "MODEL.FPN is a group of keys" in wrong[f"{child}:6"]
    assert "expected int" in wrong[f"{child}:4"]
    assert cfg.SOLVER.BASE_LR == 0.5


def test_unknown_group_is_named_once_not_per_key_inside_it(tmp_path):
    path = _yaml(tmp_path, "c.yaml", "MODEL:\n  FOO:\n    A: 1\n    B: 2\n")
    _, report = check_config_sources(path, [])
    [problem] = report.problems
    assert problem.where == f"{path}:2" and "MODEL.FOO is not a config key" in problem.message


def test_override_below_a_value_is_an_unknown_key():
    _, report = check_config_sources(None, ["SOLVER.MAX_ITER.X", "1"])
    [problem] = report.problems
    assert problem.kind == "unknown-key" and "SOLVER.MAX_ITER.X" in problem.message


@pytest.mark.parametrize(
    "files, message",
    [
        ({"a.yaml": "_BASE_: b.yaml\n", "b.yaml": "_BASE_: a.yaml\n"}, "_BASE_ cycle"),
        ({"a.yaml": "_BASE_: missing.yaml\n"}, "config file not found"),
        ({"a.yaml": "SOLVER: [1,\n"}, "not valid YAML"),
        ({"a.yaml": ""}, "config file is empty"),
        ({"a.yaml": "- 1\n- 2\n"}, "must be a mapping"),
    ],
)
def test_a_file_fvcore_cannot_load_is_one_named_problem(tmp_path, files, message):
    for name, text in files.items():
        _yaml(tmp_path, name, text)
    _, report = check_config_sources(str(tmp_path / "a.yaml"), ["SOLVER.MAX_ITER", "7"])
    [problem] = report.problems
    assert problem.kind == "config-file" and message in problem.message
    assert str(tmp_path) in problem.where


def test_detectron2_retinanet_config_with_a_python_tag_validates_as_training_merges_it(tmp_path):
    from detectron2 import model_zoo

    # Base-RetinaNet.yaml sets its anchor sizes with !!python/object/apply:eval, which
    # Detectron2's merge_from_file (allow_unsafe=True) accepts: validation must not refuse it.
    path = model_zoo.get_config_file("COCO-Detection/retinanet_R_50_FPN_1x.yaml")
    cfg, report = check_config_sources(path, [])
    assert report.ok, report.format()
    expected = _base_cfg()
    expected.merge_from_file(path)
    assert cfg.dump() == expected.dump()
    # A file with such a tag still has its keys checked, at their lines.
    child = _yaml(
        tmp_path,
        "child.yaml",
        f"_BASE_: {path}\nMODEL:\n  ANCHOR_GENERATOR:\n"
        '    SIZES: !!python/object/apply:eval ["[[x, x * 2] for x in [32, 64, 128, 256, 512]]"]\n'
        "  RETINANET:\n    NUM_CONV: 2\n",
    )
    cfg, report = check_config_sources(child, [])
    [problem] = report.problems
    assert problem.where == f"{child}:6" and "did you mean MODEL.RETINANET.NUM_CONVS" in problem.message
    assert cfg.MODEL.ANCHOR_GENERATOR.SIZES == [[32, 64], [64, 128], [128, 256], [256, 512], [512, 1024]]


def test_resnet_rules_are_the_builders_and_all_are_reported():
    from gn_det.modeling.resnet import build_gn_resnet_backbone

    cfg = _gn_det_cfg("Base-GN-RCNN-FPN.yaml")
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 128
    cfg.MODEL.RESNETS.NUM_GROUPS = 32
    problems = _problems(check_config(cfg), "resnet")
    assert [p.where for p in problems] == [
        "config key MODEL.RESNETS.RES2_OUT_CHANNELS",
        "config key MODEL.RESNETS.NUM_GROUPS",
    ]
    with pytest.raises(ValueError) as error:
        build_gn_resnet_backbone(cfg)
    assert str(error.value) == " ".join(p.message for p in problems)


def test_deformable_stages_are_refused_only_for_gn_dets_resnet():
    cfg = _base_cfg()
    cfg.MODEL.BACKBONE.NAME = "build_resnet_fpn_backbone"  # Detectron2's: has deformable blocks
    cfg.MODEL.RESNETS.DEFORM_ON_PER_STAGE = [False, True, True, True]
    assert not _problems(check_config(cfg), "resnet")
    cfg.MODEL.BACKBONE.NAME = "build_gn_resnet_fpn_backbone"
    [problem] = _problems(check_config(cfg), "resnet")
    assert problem.where == "config key MODEL.RESNETS.DEFORM_ON_PER_STAGE"


def test_batch_written_for_another_world_size_is_rescaled_first():
    cfg = _base_cfg()
    cfg.SOLVER.IMS_PER_BATCH, cfg.SOLVER.REFERENCE_WORLD_SIZE = 16, 8
    assert not _problems(check_config(cfg, num_processes=3), "batch-size")  # 2/GPU x 3 = 6
    cfg.SOLVER.IMS_PER_BATCH = 12
    [problem] = _problems(check_config(cfg, num_processes=3), "batch-size")
    assert "not a multiple of SOLVER.REFERENCE_WORLD_SIZE=8" in problem.message


def test_yacs_non_existent_key_error_becomes_a_named_problem(tmp_path, monkeypatch):
    # Unknown keys are normally found before the merge; should one reach yacs, its bare
    # KeyError is still turned into a named problem with "did you mean", and the merge goes on.
    from gn_det.validation import config_sources

    monkeypatch.setattr(config_sources, "_is_known", lambda cfg, key: True)
    path = _yaml(tmp_path, "c.yaml", "SOLVER:\n  BASE_LRR: 0.1\n  MAX_ITER: 5\n")
    cfg, report = check_config_sources(path, [])
    [problem] = report.problems
    assert problem.kind == "unknown-key" and problem.where == f"{path}:2"
    assert "did you mean SOLVER.BASE_LR" in problem.message
    assert cfg.SOLVER.MAX_ITER == 5
