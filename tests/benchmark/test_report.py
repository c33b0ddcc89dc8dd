"""Ratios and Markdown tables of a benchmark result (made up here, not measured)."""
from gn_det.benchmark import METRICS, VARIANTS, format_markdown, read_json, summarize, write_json
from gn_det.benchmark import compute_ratios

# variant -> (train s, inference s/im, train MiB, inference MiB)
MEDIANS = {"a": (2.0, 0.5, 1000.0, 400.0), "b": (2.4, 0.7, 1500.0, 420.0),
           "c": (2.2, 0.7, 1400.0, 410.0), "d": (2.6, 0.8, 1500.0, 430.0)}


def _results(medians):
    return {k: {m: summarize([v * 0.9, v, v * 1.2]) for (m, _), v in zip(METRICS, values)}
            for k, values in medians.items()}


def _result(medians=MEDIANS):
    keys = list(medians)
    results = _results(medians)
    return {
        "started": "2026-01-01T00:00:00+00:00",
        "device": {"name": "Test CPU", "type": "cpu", "threads": 2, "torch": "2.x", "detectron2": "0.6"},
        "conditions": {"load_average_start": [0.1, 0.1, 0.1], "load_average_end": [0.2, 0.1, 0.1]},
        "settings": {"repeats": 3, "warmup": 1, "rois_per_image": 512, "proposals_per_image": 1000,
                     "detections_per_image": 100, "memory_train_steps": 2, "memory_inference_steps": 1},
        "workload": {"seed": 0, "instances_per_image": 8, "proposals_per_image": 1000,
                     "rois_per_image": 512, "positive_rois_per_image": 128, "detections_per_image": 100},
        "variants": {k: {"name": VARIANTS[k].name} for k in keys},
        "rows": [{"image_size": [480, 800], "images_per_batch": 2, "main": True, "results": results,
                  "ratios": compute_ratios(results, keys)}],
        "layers": None,
    }


def test_ratios_are_medians_over_a_and_c_over_b():
    ratios = compute_ratios(_results(MEDIANS), list(MEDIANS))
    assert ratios["to_a"]["b"]["train_step_s"] == 2.4 / 2.0
    assert ratios["to_a"]["d"]["inference_peak_memory_mib"] == 430.0 / 400.0
    assert set(ratios["to_a"]) == {"b", "c", "d"}
    assert ratios["c_to_b"]["train_peak_memory_mib"] == 1400.0 / 1500.0


def test_paired_ratios_take_the_median_of_same_repeat_ratios():
    results = _results(MEDIANS)
    results["a"]["train_step_s"] = summarize([1.0, 2.0, 4.0])  # the machine slowed down...
    results["b"]["train_step_s"] = summarize([1.1, 2.4, 4.8])  # ...for b as well
    ratios = compute_ratios(results, list(MEDIANS))
    assert ratios["to_a_paired"]["b"]["train_step_s"] == 1.2
    assert "train_peak_memory_mib" not in ratios["to_a_paired"]["b"]
    md = format_markdown({**_result(), "rows": [{**_result()["rows"][0], "results": results,
                                                  "ratios": ratios}]})
    assert "Same-repeat time ratios to (a) (median over repeats" in md
    assert "(b) train ×1.20, inference ×1.40" in md


def test_ratios_without_a_or_b_are_left_out():
    ratios = compute_ratios(_results({"c": MEDIANS["c"], "d": MEDIANS["d"]}), ["c", "d"])
    assert ratios == {}


def test_markdown_main_table_shows_medians_ranges_andcompute_ratios():
    md = format_markdown(_result())
    assert "| (b) Detectron2 GN | 2.400 [2.160–2.880] | 1.20 | 0.700 [0.630–0.840] | 1.40 |" in md
    assert "| (a) BN* | 2.000 [1.800–2.400] | 1.00 |" in md
    assert "(c) gn_det GN vs (b) Detectron2 GN: train s/iter ×0.92" in md
    assert "Test CPU (cpu, 2 threads)" in md


def test_markdown_marks_unmeasured_memory():
    result = _result()
    for k in result["rows"][0]["results"]:
        result["rows"][0]["results"][k]["train_peak_memory_mib"] = None
    result["rows"][0]["ratios"] = compute_ratios(result["rows"][0]["results"], list(MEDIANS))
    md = format_markdown(result)
    assert "| (a) BN* | 2.000 [1.800–2.400] | 1.00 | 0.500 [0.450–0.600] | 1.00 | not measured | – |" in md


def test_json_round_trip(tmp_path):
    path = tmp_path / "sub" / "result.json"
    write_json(_result(), str(path))
    assert read_json(str(path)) == _result()


def test_markdown_names_the_allocator_settings():
    result = _result()
    result["device"]["allocator_env"] = {"MALLOC_TRIM_THRESHOLD_": "4294967296",
                                         "MALLOC_MMAP_THRESHOLD_": "4294967296"}
    md = format_markdown(result)
    assert ("Allocator settings: MALLOC_MMAP_THRESHOLD_=4294967296, "
            "MALLOC_TRIM_THRESHOLD_=4294967296.") in md


def test_markdown_says_when_the_allocator_is_the_default():
    result = _result()
    result["device"]["allocator_env"] = {}
    assert "Allocator: the C library's defaults." in format_markdown(result)
    del result["device"]["allocator_env"]  # a result written before the field existed
    assert "Allocator" not in format_markdown(result)
