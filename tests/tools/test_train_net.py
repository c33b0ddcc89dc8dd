"""Training, resuming, evaluating, fine-tuning and drawing with gn_det's engine (tiny CPU runs).

One tiny training run (4 iterations, 64 px images) is shared by the tests of this module.
"""
import glob
import json
import os

import cv2
import pytest
import torch
from detectron2.data import MetadataCatalog

from gn_det.checkpoint import CheckpointMismatchError
from gn_det.engine import (
    Trainer,
    setup,
    train_net_main,
    visualize_predictions,
)
from gn_det.evaluation import SUMMARY_METRICS, load_ap_report

from tiny_run import make_split, remap_category_ids, run_tool, tiny_opts, train_args


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_data")
    train = make_split(root, "tiny_train", num_images=6, seed=11)
    val = make_split(root, "tiny_val", num_images=3, seed=12)
    # A 2-class custom dataset with non-contiguous category ids, for fine-tuning.
    two = make_split(root, "two_class", num_images=4, seed=13, classes=("circle", "star"))
    two_json = remap_category_ids(two[0], [5, 9], str(root / "two_class_ids_5_9.json"))
    return {"tiny_train": train, "tiny_val": val, "ft_train": (two_json, two[1]), "ft_val": (two_json, two[1])}


def _datasets(data, *names):
    return [(name, *data[name]) for name in names]


def _assert_same_numbers(entry, reference):
    """Same report entries; float noise from another process's thread scheduling tolerated."""
    assert entry.keys() == reference.keys()
    for task in ("bbox", "segm"):
        ours = dict(entry[task], **{"AP-" + k: v for k, v in entry[task]["per_category"].items()})
        theirs = dict(reference[task], **{"AP-" + k: v for k, v in reference[task]["per_category"].items()})
        assert ours.keys() == theirs.keys()
        for metric, value in theirs.items():
            if metric != "per_category":
                assert (ours[metric] is None) == (value is None), (task, metric)
                assert value is None or ours[metric] == pytest.approx(value, abs=1e-3), (task, metric)


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """4 iterations, checkpoints every 2, evaluated at the end."""
    out = tmp_path_factory.mktemp("run")
    args = train_args(_datasets(data, "tiny_train", "tiny_val"), tiny_opts(out))
    train_net_main(args)
    return out


def test_training_writes_checkpoints_metrics_events_and_report(trained):
    names = set(os.listdir(trained))
    assert {"model_0000001.pth", "model_0000003.pth", "model_final.pth", "last_checkpoint",
            "metrics.json", "config.yaml", "log.txt", "ap_report.json", "ap_report.md"} <= names
    assert glob.glob(str(trained / "events.out.tfevents.*")), "TensorBoard events"
    lines = [json.loads(line) for line in open(trained / "metrics.json")]
    losses = [m for m in lines if "total_loss" in m]
    assert losses and {"loss_mask", "loss_cls", "lr", "eta_seconds"} <= set(losses[-1])
    assert losses[-1]["iteration"] == 3
    assert any("segm/AP" in m for m in lines), "final evaluation metrics go to metrics.json"
    assert "eta:" in open(trained / "log.txt").read()


def test_report_has_every_field_for_boxes_and_masks(trained):
    report = load_ap_report(str(trained))
    assert report["iteration"] == 3 and report["weights"].endswith("model_final.pth")
    entry = report["datasets"]["tiny_val"]
    assert entry["num_images"] == 3
    for task in ("bbox", "segm"):
        assert set(SUMMARY_METRICS) <= set(entry[task])
        assert set(entry[task]["per_category"]) <= {"circle", "square", "triangle", "star"}
    assert report["run"]["norm"]["backbone"] == "GN" and report["run"]["ims_per_gpu"] == 2


def test_resume_continues_at_the_next_iteration_with_optimizer_and_scheduler_state(data, trained, tmp_path):
    # Continue the run in a copy, to 6 iterations; the LR dropped at iteration 3 (STEPS (3,)).
    for name in ("model_final.pth", "last_checkpoint"):
        (tmp_path / name).write_bytes((trained / name).read_bytes())
    saved = torch.load(trained / "model_final.pth", map_location="cpu", weights_only=False)
    cfg = setup(train_args(_datasets(data, "tiny_train", "tiny_val"), tiny_opts(tmp_path, test=None, max_iter=6),
                           resume=True))
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=True)
    assert trainer.start_iter == saved["iteration"] + 1 == 4
    assert trainer.scheduler.last_epoch == 4
    momentum = trainer.optimizer.state_dict()["state"]
    saved_momentum = saved["trainer"]["_trainer"]["optimizer"]["state"]
    assert momentum.keys() == saved_momentum.keys() and len(momentum) > 0
    for key in momentum:
        torch.testing.assert_close(momentum[key]["momentum_buffer"], saved_momentum[key]["momentum_buffer"])
    trainer.train()
    lines = [json.loads(line) for line in open(tmp_path / "metrics.json")]
    steps = [m for m in lines if "total_loss" in m]
    assert steps[-1]["iteration"] == 5
    assert min(m["iteration"] for m in steps) >= 4, "nothing before the checkpoint is trained again"
    assert steps[-1]["lr"] == pytest.approx(cfg.SOLVER.BASE_LR * cfg.SOLVER.GAMMA)
    final = torch.load(tmp_path / "model_final.pth", map_location="cpu", weights_only=False)
    assert final["iteration"] == 5


def test_eval_only_reproduces_the_training_report(data, trained, tmp_path):
    opts = tiny_opts(tmp_path) + ["MODEL.WEIGHTS", str(trained / "model_final.pth")]
    train_net_main(train_args(_datasets(data, "tiny_train", "tiny_val"), opts, eval_only=True))
    again, first = load_ap_report(str(tmp_path)), load_ap_report(str(trained))
    _assert_same_numbers(again["datasets"]["tiny_val"], first["datasets"]["tiny_val"])
    assert again["iteration"] == 3


def test_evaluate_tool_on_a_coco_json_and_image_dir(data, trained, tmp_path):
    json_file, image_dir = data["tiny_val"]
    result = run_tool("evaluate.py", "--weights", trained / "model_final.pth", "--coco-json", json_file,
                      "--image-root", image_dir, "--dataset-name", "val_by_path", "--output", tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = load_ap_report(str(tmp_path))
    _assert_same_numbers(report["datasets"]["val_by_path"], load_ap_report(str(trained))["datasets"]["tiny_val"])
    assert "| metric | bbox | segm |" in result.stdout + result.stderr


def test_fine_tune_with_another_class_count_reinitializes_only_class_layers(data, trained, tmp_path):
    opts = tiny_opts(tmp_path, train="ft_train", test="ft_val", max_iter=2) + [
        "MODEL.WEIGHTS", str(trained / "model_final.pth")]
    cfg = setup(train_args(_datasets(data, "ft_train", "ft_val"), opts))
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == 2, "taken from the json"
    assert MetadataCatalog.get("ft_train").thing_dataset_id_to_contiguous_id == {5: 0, 9: 1}
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    report = json.load(open(tmp_path / "fine_tune_report.json"))
    assert (report["checkpoint_num_classes"], report["model_num_classes"]) == (4, 2)
    shapes = {r["key"]: (r["checkpoint_shape"][0], r["model_shape"][0]) for r in report["reinitialized"]}
    assert shapes == {
        "roi_heads.box_predictor.cls_score.weight": (5, 3), "roi_heads.box_predictor.cls_score.bias": (5, 3),
        "roi_heads.box_predictor.bbox_pred.weight": (16, 8), "roi_heads.box_predictor.bbox_pred.bias": (16, 8),
        "roi_heads.mask_head.predictor.weight": (4, 2), "roi_heads.mask_head.predictor.bias": (4, 2),
    }
    checkpoint = torch.load(trained / "model_final.pth", map_location="cpu", weights_only=False)["model"]
    for key, value in trainer.model.state_dict().items():
        if key not in shapes:
            torch.testing.assert_close(value, checkpoint[key], msg=key)
    trainer.train()
    assert os.path.isfile(tmp_path / "model_final.pth")
    report = load_ap_report(str(tmp_path))
    assert set(report["datasets"]["ft_val"]["segm"]["per_category"]) <= {"circle", "star"}


def test_checkpoint_of_another_architecture_is_refused_with_the_layers(data, trained, tmp_path):
    opts = tiny_opts(tmp_path, max_iter=1) + ["MODEL.WEIGHTS", str(trained / "model_final.pth"),
                                              "MODEL.FPN.OUT_CHANNELS", "128"]  # the base has 64
    trainer = Trainer(setup(train_args(_datasets(data, "tiny_train", "tiny_val"), opts)))
    with pytest.raises(CheckpointMismatchError, match=r"backbone\.fpn_lateral2\.weight"):
        trainer.resume_or_load(resume=False)


def test_eval_only_on_a_dataset_with_other_classes_is_an_error(data, trained, tmp_path):
    opts = tiny_opts(tmp_path, train="ft_train", test="ft_val") + ["MODEL.WEIGHTS", str(trained / "model_final.pth")]
    with pytest.raises(ValueError, match="another number of classes"):
        train_net_main(train_args(_datasets(data, "ft_train", "ft_val"), opts, eval_only=True))


def test_num_classes_on_the_command_line_must_match_the_dataset(data, tmp_path):
    opts = tiny_opts(tmp_path) + ["MODEL.ROI_HEADS.NUM_CLASSES", "7"]
    with pytest.raises(ValueError, match="NUM_CLASSES 7 on the command line disagrees"):
        setup(train_args(_datasets(data, "tiny_train", "tiny_val"), opts))


def test_rle_dataset_with_polygon_mask_format_is_an_error(data, tmp_path):
    opts = tiny_opts(tmp_path) + ["INPUT.MASK_FORMAT", "polygon"]
    with pytest.raises(ValueError, match="INPUT.MASK_FORMAT bitmask"):
        setup(train_args(_datasets(data, "tiny_train", "tiny_val"), opts))


def test_unregistered_dataset_name_is_an_error_naming_it(tmp_path):
    with pytest.raises(KeyError, match="'no_such_set'.*--dataset no_such_set"):
        setup(train_args([], tiny_opts(tmp_path, train="no_such_set")))


def test_visualize_draws_predictions_beside_ground_truth(data, trained, tmp_path):
    cfg = setup(train_args(_datasets(data, "tiny_train", "tiny_val"),
                           tiny_opts(tmp_path) + ["MODEL.WEIGHTS", str(trained / "model_final.pth"),
                                                  "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"], eval_only=True))
    paths = visualize_predictions(cfg, str(tmp_path / "vis"), dataset_name="tiny_val", num_images=2)
    assert len(paths) == 2
    image = cv2.imread(paths[0])
    source = cv2.imread(os.path.join(data["tiny_val"][1], "000001.png"))
    assert image.shape[1] == 2 * image.shape[0], "prediction and ground truth side by side"
    plain = cv2.resize(source, (image.shape[0], image.shape[0]), interpolation=cv2.INTER_LINEAR)
    left = image[:, : image.shape[0]]
    assert (abs(left.astype(int) - plain.astype(int)).sum(axis=2) > 60).mean() > 0.01, "nothing was drawn"


def test_visualize_tool_without_images_explains_what_to_give(trained, tmp_path):
    result = run_tool("visualize.py", "--weights", trained / "model_final.pth", "--output", tmp_path)
    assert result.returncode == 2 and "--dataset-name" in result.stderr
