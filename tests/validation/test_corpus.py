"""The mutation corpus (corpus.py, with the real datasets' quirks of real_quirks.py) through the
differential harness (differential.py): for every quirk in COCO, VIA 1, VIA 2 and labelme, gn_det is never worse than Detectron2 alone (never
refuses what Detectron2 trains unless Detectron2 learns it wrongly, never passes unchanged what
crashes Detectron2, trains what it accepts, counts every record, says how to go on, --strict
refuses every change) and docs/validation.md states the verdict.

Cost: one tiny GN Mask R-CNN built once; per kind, one or two Detectron2 runs (loader, mapper,
a training step on 3 images of 64 x 48 px) in a forked child, ~0.5 s of CPU.
"""

import os
import re

import pytest

import corpus
import differential

DOCS = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "validation.md")
CASES = sorted(corpus.KINDS, key=lambda k: (corpus.FORMATS.index(k[0]), k[1]))
_RESULTS = {}


@pytest.fixture(scope="module", autouse=True)
def _cache_dir(tmp_path_factory):
    old = os.environ.get("GN_DET_CACHE_DIR")
    os.environ["GN_DET_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("GN_DET_CACHE_DIR")
    else:
        os.environ["GN_DET_CACHE_DIR"] = old


def _compare(key, tmp_path_factory):
    if key not in _RESULTS:
        root = tmp_path_factory.mktemp(f"{key[0]}_{key[1]}")
        path, image_root, mask_format = corpus.write(key[0], key[1], str(root))
        _RESULTS[key] = differential.compare(key[0], path, image_root, mask_format)
    return _RESULTS[key]


def test_the_corpus_has_at_least_40_kinds_in_every_format():
    assert len({name for _, name in CASES}) >= 40
    assert {fmt for fmt, _ in CASES} == {"coco", "via1", "via2", "labelme", "real"}


@pytest.mark.parametrize("key", CASES, ids=["/".join(k) for k in CASES])
def test_gn_det_is_never_worse_than_detectron2_alone(key, tmp_path_factory):
    comparison = _compare(key, tmp_path_factory)
    assert not comparison.violations(), (
        f"{key}: Detectron2 {comparison.detectron2.describe()}; gn_det {comparison.default.describe()}\n"
        + "\n".join(comparison.violations()) + "\n" + comparison.default.message)


def test_docs_state_every_verdict(tmp_path_factory):
    rows = [_compare(key, tmp_path_factory).row(corpus.KINDS[key]) for key in CASES]
    with open(DOCS, encoding="utf-8") as f:
        text = f.read()
    table = re.search(r"<!-- corpus table -->\n(.*?)\n<!-- end of corpus table -->", text, re.S)
    assert table, "docs/validation.md lacks the corpus table markers"
    documented = [line for line in table.group(1).splitlines() if line.startswith("| ") and "`" in line]
    assert documented == rows, "docs/validation.md's corpus table is out of date; the current rows:\n" + "\n".join(rows)
