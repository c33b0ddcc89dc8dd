"""Comparing runs: side-by-side table and AP plot from several output directories."""
import cv2
import pytest

from gn_det.evaluation import SUMMARY_METRICS, build_ap_report, comparison_markdown, load_runs, plot_comparison, write_ap_report

from tiny_run import run_tool


def _write_run(directory, norm, ims_per_gpu, ap, dataset="val"):
    metrics = {m: ap + i for i, m in enumerate(SUMMARY_METRICS)}
    report = build_ap_report(
        {dataset: {"bbox": dict(metrics), "segm": {m: v - 1 for m, v in metrics.items()}}},
        class_names={dataset: []}, num_images={dataset: 5},
        run={"norm": {"backbone": norm, "fpn": norm, "box_head": norm, "mask_head": norm}, "ims_per_gpu": ims_per_gpu},
        iteration=99,
    )
    write_ap_report(report, str(directory))
    return directory


@pytest.fixture
def runs(tmp_path):
    return [
        _write_run(tmp_path / "gn_1", "GN", 1, 30.0),
        _write_run(tmp_path / "gn_4", "GN", 4, 31.0),
        _write_run(tmp_path / "bn_1", "BN", 1, 20.0),
        _write_run(tmp_path / "bn_4", "BN", 4, 28.0),
    ]


def test_table_puts_runs_side_by_side(runs):
    table = comparison_markdown(load_runs([str(r) for r in runs]))
    lines = table.splitlines()
    assert lines[2] == "| | gn_1 | gn_4 | bn_1 | bn_4 |"
    assert "| norm.backbone | GN | GN | BN | BN |" in lines
    assert "| ims_per_gpu | 1 | 4 | 1 | 4 |" in lines
    assert "| bbox AP | 30.0 | 31.0 | 20.0 | 28.0 |" in lines
    assert "| segm ARl | 40.0 | 41.0 | 30.0 | 38.0 |" in lines
    assert len([line for line in lines if line.startswith("| bbox") or line.startswith("| segm")]) == 24


def test_plot_has_one_line_per_norm(runs, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = []
    original = plt.close
    plt.close = figures.append  # keep the figure to inspect it
    try:
        path = plot_comparison(load_runs([str(r) for r in runs]), str(tmp_path / "plot.png"))
    finally:
        plt.close = original
    image = cv2.imread(path)
    assert image is not None and image.shape[0] > 100 and image.std() > 5
    axes = figures[0].axes
    assert [a.get_ylabel() for a in axes] == ["bbox AP", "segm AP"]
    lines = {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in axes[0].lines}
    assert lines == {"norm.backbone=GN": ([1, 4], [30.0, 31.0]), "norm.backbone=BN": ([1, 4], [20.0, 28.0])}
    plt.close(figures[0])


def test_runs_without_a_common_dataset_are_refused(tmp_path):
    a = _write_run(tmp_path / "a", "GN", 1, 30.0, dataset="x")
    b = _write_run(tmp_path / "b", "GN", 1, 30.0, dataset="y")
    with pytest.raises(ValueError, match="no common dataset"):
        comparison_markdown(load_runs([str(a), str(b)]))


def test_compare_tool_prints_the_table_and_writes_the_plot(runs, tmp_path):
    result = run_tool("compare.py", *runs, "--plot", tmp_path / "p.png", "--output", tmp_path / "t.md")
    assert result.returncode == 0, result.stderr
    assert "| bbox AP | 30.0 | 31.0 | 20.0 | 28.0 |" in result.stdout
    assert (tmp_path / "t.md").read_text() in result.stdout
    assert cv2.imread(str(tmp_path / "p.png")) is not None


def test_compare_tool_names_a_directory_without_report(tmp_path):
    result = run_tool("compare.py", tmp_path)
    assert result.returncode == 2 and "no ap_report.json" in result.stderr
