"""Command lines: train_net's Detectron2 flags plus --dataset, and evaluate.py's translation."""
import os

import pytest

from gn_det.engine import argument_parser, evaluate_args_to_train_args, evaluate_argument_parser


def test_train_net_takes_detectron2_flags_repeated_datasets_and_trailing_overrides():
    args = argument_parser().parse_args([
        "--config-file", "c.yaml", "--num-gpus", "2", "--num-machines", "3", "--machine-rank", "1",
        "--dist-url", "tcp://h:1", "--resume", "--dataset", "a", "a.json", "a_img",
        "--dataset", "b", "b.json", "b_img", "SOLVER.MAX_ITER", "10", "OUTPUT_DIR", "o",
    ])
    assert (args.config_file, args.num_gpus, args.num_machines, args.machine_rank) == ("c.yaml", 2, 3, 1)
    assert args.dist_url == "tcp://h:1" and args.resume and not args.eval_only
    assert args.dataset == [["a", "a.json", "a_img"], ["b", "b.json", "b_img"]]
    assert args.opts == ["SOLVER.MAX_ITER", "10", "OUTPUT_DIR", "o"]


def _weights(tmp_path, with_config=True):
    run = tmp_path / "run"
    run.mkdir()
    (run / "model_final.pth").write_bytes(b"")
    if with_config:
        (run / "config.yaml").write_text("MODEL:\n  DEVICE: cpu\n")
    return str(run / "model_final.pth")


def test_evaluate_on_a_json_registers_it_and_defaults_config_and_output_to_the_checkpoint_dir(tmp_path):
    weights = _weights(tmp_path)
    cli = evaluate_argument_parser().parse_args(
        ["--weights", weights, "--coco-json", "/d/val.json", "--image-root", "/d/img", "TEST.DETECTIONS_PER_IMAGE", "50"])
    args = evaluate_args_to_train_args(cli)
    run = os.path.dirname(weights)
    assert args.eval_only and args.config_file == os.path.join(run, "config.yaml")
    assert args.dataset == [["val", "/d/val.json", "/d/img"]]
    assert args.opts == ["TEST.DETECTIONS_PER_IMAGE", "50", "MODEL.WEIGHTS", weights,
                         "DATASETS.TEST", "('val',)", "OUTPUT_DIR", os.path.join(run, "evaluation", "val")]


def test_evaluate_needs_a_dataset(tmp_path):
    cli = evaluate_argument_parser().parse_args(["--weights", _weights(tmp_path)])
    with pytest.raises(ValueError, match="--dataset-name NAME"):
        evaluate_args_to_train_args(cli)


def test_evaluate_json_needs_its_image_dir(tmp_path):
    cli = evaluate_argument_parser().parse_args(["--weights", _weights(tmp_path), "--coco-json", "v.json"])
    with pytest.raises(ValueError, match="--coco-json and --image-root go together"):
        evaluate_args_to_train_args(cli)


def test_evaluate_without_config_next_to_the_checkpoint_names_the_missing_file(tmp_path):
    cli = evaluate_argument_parser().parse_args(
        ["--weights", _weights(tmp_path, with_config=False), "--dataset-name", "gn_det_shapes_val"])
    with pytest.raises(FileNotFoundError, match=r"run/config\.yaml"):
        evaluate_args_to_train_args(cli)
