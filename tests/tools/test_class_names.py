"""Class names travel with the run: a model trained on a custom dataset names its detections where
that dataset is not registered (a predictor, tools/visualize.py on plain images, tools/evaluate.py
in a new process), and is not evaluated on a dataset with its classes in another order."""
import json
import os
import re
import shutil

import pytest
import torch

from gn_det.engine import CheckedPredictor, build_config, train_net_main, visualize_predictions

from tiny_run import make_split, remap_category_ids, run_tool, tiny_opts, train_args

CLASSES = ["circle", "star"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """2 iterations on a 2-class dataset with category ids 5 and 9, evaluated on itself."""
    root = tmp_path_factory.mktemp("names")
    json_file, image_dir = make_split(root, "names_split", num_images=4, seed=51, classes=tuple(CLASSES))
    json_file = remap_category_ids(json_file, [5, 9], str(root / "names_5_9.json"))
    out = root / "run"
    datasets = [("names_train", json_file, image_dir), ("names_val", json_file, image_dir)]
    train_net_main(train_args(datasets, tiny_opts(out, train="names_train", test="names_val", max_iter=2)))
    return {"out": out, "json": json_file, "images": image_dir, "weights": out / "model_final.pth"}


def test_checkpoint_and_output_dir_record_the_classes_and_datasets(run):
    saved = torch.load(run["weights"], map_location="cpu", weights_only=True)["dataset_metadata"]
    assert saved["thing_classes"] == CLASSES and saved["thing_dataset_ids"] == [5, 9]
    assert saved["datasets"]["names_val"] == {"role": "test", "json_file": run["json"], "image_root": run["images"]}
    assert json.loads((run["out"] / "dataset_metadata.json").read_text()) == saved


def _unregistered_cfg(run):
    """The run's config.yaml as a new process reads it: its datasets are not registered."""
    args = train_args([], ["MODEL.WEIGHTS", str(run["weights"]), "DATASETS.TEST", "('never_registered',)",
                           "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"], config_file=str(run["out"] / "config.yaml"))
    return build_config(args)


def test_predictor_names_classes_of_a_dataset_not_registered_here(run):
    predictor = CheckedPredictor(_unregistered_cfg(run))
    assert predictor.metadata.thing_classes == CLASSES
    assert predictor.metadata.thing_dataset_id_to_contiguous_id == {5: 0, 9: 1}


def test_visualize_draws_with_the_checkpoints_class_names(run, tmp_path, monkeypatch):
    import gn_det.engine.visualize as visualize

    seen = []

    class RecordingVisualizer(visualize.Visualizer):
        def draw_instance_predictions(self, predictions):
            seen.append((list(self.metadata.get("thing_classes", [])), len(predictions)))
            return super().draw_instance_predictions(predictions)

    monkeypatch.setattr(visualize, "Visualizer", RecordingVisualizer)
    image = os.path.join(run["images"], "000001.png")
    paths = visualize_predictions(_unregistered_cfg(run), str(tmp_path), image_paths=[image])
    assert len(paths) == 1 and seen == [(CLASSES, seen[0][1])] and seen[0][1] > 0


def test_visualize_tool_labels_a_plain_image_with_class_names(run, tmp_path):
    image = tmp_path / "photo.png"
    shutil.copy(os.path.join(run["images"], "000002.png"), image)  # an image of no dataset
    result = run_tool("visualize.py", "--weights", run["weights"], "--input", image, "--score-threshold", "0",
                      "--output", tmp_path / "vis")
    assert result.returncode == 0, result.stderr[-3000:]
    found = re.search(r"photo\.png: (\d+) detections \((.*)\) ->", result.stdout + result.stderr)
    assert found and int(found.group(1)) > 0, (result.stdout + result.stderr)[-2000:]
    labels = {label.rsplit(" ", 1)[0] for label in found.group(2).split(", ")}
    assert labels <= set(CLASSES), labels  # names, not class indices
    assert (tmp_path / "vis" / "photo_pred.png").is_file()


def test_evaluate_tool_finds_the_runs_dataset_by_name_in_a_new_process(run, tmp_path):
    result = run_tool("evaluate.py", "--weights", run["weights"], "--dataset-name", "names_val", "--output", tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "ap_report.json").read_text())
    assert report["datasets"]["names_val"]["num_images"] == 4
    assert set(report["datasets"]["names_val"]["segm"]["per_category"]) <= set(CLASSES)


def test_evaluation_on_a_dataset_with_the_classes_in_another_order_is_refused(run, tmp_path):
    coco = json.loads(open(run["json"]).read())
    for category in coco["categories"]:  # id 5 is now "star", id 9 "circle"
        category["name"] = {"circle": "star", "star": "circle"}[category["name"]]
    swapped = tmp_path / "swapped.json"
    swapped.write_text(json.dumps(coco))
    opts = tiny_opts(tmp_path, train="names_swapped", test="names_swapped") + ["MODEL.WEIGHTS", str(run["weights"])]
    with pytest.raises(ValueError, match=r"trained on the classes \['circle', 'star'\].*has \['star', 'circle'\]"):
        train_net_main(train_args([("names_swapped", str(swapped), run["images"])], opts, eval_only=True))
