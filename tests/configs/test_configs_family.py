"""Consistency of the COCO config family (no model is built here; see test_configs_build.py).

Checked over the merged configs (Detectron2 defaults + add_gn_config + the YAML and its _BASE_s):
the per-GPU batch rule (via gn_det.batch_scaling), registered names, that each baseline differs
from its GN twin only in norm settings, that file names say what the configs do, and that
pretrained weights come with the pixel/stride settings of their family.
"""

import functools
import re
from pathlib import Path

import pytest
from detectron2.checkpoint.catalog import ModelCatalog
from detectron2.config import CfgNode, get_cfg
from detectron2.data import DatasetCatalog
from detectron2.modeling import BACKBONE_REGISTRY, META_ARCH_REGISTRY
from detectron2.modeling.anchor_generator import ANCHOR_GENERATOR_REGISTRY
from detectron2.modeling.meta_arch import GeneralizedRCNN, RetinaNet
from detectron2.modeling.proposal_generator import PROPOSAL_GENERATOR_REGISTRY, RPN_HEAD_REGISTRY
from detectron2.modeling.roi_heads import (
    ROI_BOX_HEAD_REGISTRY,
    ROI_HEADS_REGISTRY,
    ROI_KEYPOINT_HEAD_REGISTRY,
    ROI_MASK_HEAD_REGISTRY,
    Res5ROIHeads,
)

import gn_det  # noqa: F401  (registers gn_det's components)
from gn_det import add_gn_config
from gn_det.batch_scaling import (
    REFERENCE_WORLD_SIZE,
    rescale_to_images_per_gpu,
    solver_for_schedule,
)

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"
# The small-data family for the embedded dataset follows its own rules (tools); every check
# here that is about the COCO family skips it. test_configs_build.py covers it too.
OWN_RULES_DIRS = ("Synthetic",)

ALL_YAMLS = sorted(p.relative_to(CONFIGS).as_posix() for p in CONFIGS.rglob("*.y*ml"))
COCO_YAMLS = [p for p in ALL_YAMLS if p.split("/")[0] not in OWN_RULES_DIRS]
BASES = [p for p in COCO_YAMLS if Path(p).name.startswith("Base-")]
MODELS = [p for p in COCO_YAMLS if p not in BASES]

NORM_KEYS = {
    "BACKBONE": "MODEL.RESNETS.NORM",
    "FPN": "MODEL.FPN.NORM",
    "BOX_HEAD": "MODEL.ROI_BOX_HEAD.NORM",
    "MASK_HEAD": "MODEL.ROI_MASK_HEAD.NORM",
    "RETINANET_HEAD": "MODEL.RETINANET.NORM",
}
# The per-GPU batch family: every Mask R-CNN R50-FPN norm at 1, 2 and 4 images per GPU.
BATCH_FAMILY_NORMS = ("frozenbn", "bn", "syncbn", "gn", "gn_ws")
BATCH_FAMILY_IMAGES = (1, 2, 4)

# name suffix (after the schedule) -> norm of each component the model has.
# "" = no norm layer. frozenbn is the paper's BN*: frozen ImageNet BN in the backbone only.
NORM_TAGS = {
    "gn": dict(BACKBONE="GN", FPN="GN", BOX_HEAD="GN", MASK_HEAD="GN", RETINANET_HEAD="GN"),
    "gn_ws": dict(BACKBONE="GN", FPN="GN", BOX_HEAD="GN", MASK_HEAD="GN", RETINANET_HEAD="GN"),
    "frozenbn": dict(BACKBONE="FrozenBN", FPN="", BOX_HEAD="", MASK_HEAD=""),
    "bn": dict(BACKBONE="BN", FPN="BN", BOX_HEAD="BN", MASK_HEAD="BN"),
    "syncbn": dict(BACKBONE="SyncBN", FPN="SyncBN", BOX_HEAD="SyncBN", MASK_HEAD="SyncBN"),
    "frozenbn_gn": dict(BACKBONE="FrozenBN", FPN="GN", BOX_HEAD="GN", MASK_HEAD="GN"),
}
# Weights -> the settings they were trained with (Detectron2's ModelCatalog notes and zoo configs).
BGR_MEAN = [103.530, 116.280, 123.675]
WEIGHT_FAMILIES = {
    "catalog://ImageNetPretrained/FAIR/R-50-GN": dict(
        depth=50, groups=1, norms={"GN"}, stride_in_1x1=False, std=[1.0, 1.0, 1.0]
    ),
    "catalog://ImageNetPretrained/FAIR/R-101-GN": dict(
        depth=101, groups=1, norms={"GN"}, stride_in_1x1=False, std=[1.0, 1.0, 1.0]
    ),
    # MSRA's ResNet with its BN (FrozenBN in Detectron2's zoo; its SyncBN config starts
    # BN/SyncBN from it too), stride in the 1x1 conv.
    "detectron2://ImageNetPretrained/MSRA/R-50.pkl": dict(
        depth=50,
        groups=1,
        norms={"FrozenBN", "BN", "SyncBN"},
        stride_in_1x1=True,
        std=[1.0, 1.0, 1.0],
    ),
    "detectron2://ImageNetPretrained/FAIR/X-101-32x8d.pkl": dict(
        depth=101, groups=32, norms={"FrozenBN"}, stride_in_1x1=False, std=[57.375, 57.120, 58.395]
    ),
}


@functools.lru_cache(maxsize=None)
def _merged(rel_path: str) -> CfgNode:
    cfg = get_cfg()
    add_gn_config(cfg)
    cfg.merge_from_file(str(CONFIGS / rel_path))
    cfg.freeze()
    return cfg


def _get(cfg: CfgNode, dotted: str):
    node = cfg
    for part in dotted.split("."):
        node = node[part]
    return node


def _flatten(node, prefix=""):
    out = {}
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, CfgNode):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = tuple(value) if isinstance(value, list) else value
    return out


def _differing_keys(a: CfgNode, b: CfgNode):
    fa, fb = _flatten(a), _flatten(b)
    assert fa.keys() == fb.keys()
    return {k for k in fa if fa[k] != fb[k]}


def _stem(rel_path: str) -> str:
    return Path(rel_path).stem


def _schedule(rel_path: str) -> str:
    if _stem(rel_path).startswith("Base-"):
        return "1x"
    found = re.findall(r"_(\d+x)(?:_|$)", _stem(rel_path))
    assert len(found) == 1, f"{rel_path}: the file name must name one schedule (1x, 2x, 3x, 9x)"
    return found[0]


def _images_per_gpu(rel_path: str) -> int:
    found = re.search(r"_(\d+)img$", _stem(rel_path))
    return int(found.group(1)) if found else 2


def _norm_tag(rel_path: str) -> str:
    """What the name says about the norm: the suffix after the schedule, minus variant markers."""
    tail = _stem(rel_path).split(f"_{_schedule(rel_path)}_", 1)[1]
    tail = re.sub(r"_\d+img$", "", tail)
    tail = re.sub(r"_\d+ch$", "", tail)
    return re.sub(r"_zero_init$", "", tail)


def _model_components(cfg: CfgNode):
    """The components of this model that take a norm from NORM_KEYS."""
    meta = META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)
    if issubclass(meta, RetinaNet):
        return ["BACKBONE", "FPN", "RETINANET_HEAD"]
    components = ["BACKBONE"]
    if "fpn" in cfg.MODEL.BACKBONE.NAME:
        components += ["FPN", "BOX_HEAD"]
    if cfg.MODEL.MASK_ON and cfg.MODEL.ROI_MASK_HEAD.NUM_CONV > 0:
        components.append("MASK_HEAD")
    return components


def _reference_lr(cfg: CfgNode) -> float:
    meta = META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)
    return 0.01 if issubclass(meta, RetinaNet) else 0.02


def test_the_family_is_there():
    # Guards the enumeration itself: a wrong glob would make every parametrized check vacuous.
    expected = {
        "Base-GN-RCNN-FPN.yaml",
        "Base-GN-RCNN-C4.yaml",
        "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x_gn.yaml",
        "COCO-InstanceSegmentation/mask_rcnn_R_101_FPN_3x_gn.yaml",
        "COCO-InstanceSegmentation/mask_rcnn_R_50_C4_1x_gn.yaml",
        "COCO-InstanceSegmentation/scratch_mask_rcnn_R_50_FPN_9x_gn_ws.yaml",
        "COCO-InstanceSegmentation/cascade_mask_rcnn_R_50_FPN_3x_gn.yaml",
        "COCO-Detection/faster_rcnn_R_50_FPN_3x_gn.yaml",
        "COCO-Detection/retinanet_R_50_FPN_3x_gn.yaml",
    }
    assert expected <= set(COCO_YAMLS)
    assert len(MODELS) >= 40


@pytest.mark.parametrize("rel_path", ALL_YAMLS)
def test_ims_per_batch_is_images_per_gpu_times_reference_world_size(rel_path):
    solver = _merged(rel_path).SOLVER
    if rel_path in COCO_YAMLS:
        assert solver.REFERENCE_WORLD_SIZE == REFERENCE_WORLD_SIZE
        assert solver.IMS_PER_BATCH == _images_per_gpu(rel_path) * REFERENCE_WORLD_SIZE
    elif solver.REFERENCE_WORLD_SIZE > 0:  # Detectron2 asserts this when it rescales
        assert solver.IMS_PER_BATCH % solver.REFERENCE_WORLD_SIZE == 0


@pytest.mark.parametrize("rel_path", COCO_YAMLS)
def test_solver_follows_the_batch_rule(rel_path):
    cfg = _merged(rel_path)
    expected = solver_for_schedule(
        _images_per_gpu(rel_path), REFERENCE_WORLD_SIZE, _schedule(rel_path), _reference_lr(cfg)
    )
    s = cfg.SOLVER
    assert s.IMS_PER_BATCH == expected.ims_per_batch
    assert s.REFERENCE_WORLD_SIZE == expected.reference_world_size
    assert s.BASE_LR == pytest.approx(expected.base_lr, rel=1e-12)
    assert s.MAX_ITER == expected.max_iter
    assert tuple(s.STEPS) == expected.steps
    assert s.WARMUP_ITERS == expected.warmup_iters
    assert s.CHECKPOINT_PERIOD == expected.checkpoint_period
    # An evaluation period, where set, is a whole number of 1000-image blocks at any batch.
    assert (cfg.TEST.EVAL_PERIOD * s.IMS_PER_BATCH) % 16000 == 0


@pytest.mark.parametrize("norm", BATCH_FAMILY_NORMS)
@pytest.mark.parametrize("images", BATCH_FAMILY_IMAGES)
def test_per_gpu_batch_configs_are_their_norms_1x_rescaled(norm, images):
    # Key by key: the whole merged config equals the 2-image 1x config of the same norm passed
    # through batch_scaling, so only the solver differs and it follows the rule.
    base = f"COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x_{norm}.yaml"
    variant = f"COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x_{norm}_{images}img.yaml"
    assert variant in COCO_YAMLS, f"missing per-GPU batch config {variant}"
    derived = rescale_to_images_per_gpu(_merged(base), images, REFERENCE_WORLD_SIZE)
    assert _differing_keys(derived, _merged(variant)) == set()


def _used_names(cfg: CfgNode):
    """(config key, registry, normalized?) of every registered name the model is built from.

    Normalized components must be gn_det's, so that the norm keys and MODEL.GN.* reach them
    (Detectron2's own take the norm name only, or no norm at all).
    """
    m = cfg.MODEL
    meta = (
        META_ARCH_REGISTRY.get(m.META_ARCHITECTURE)
        if m.META_ARCHITECTURE in META_ARCH_REGISTRY
        else None
    )
    retinanet = meta is not None and issubclass(meta, RetinaNet)
    used = [
        ("MODEL.META_ARCHITECTURE", META_ARCH_REGISTRY, retinanet),  # RetinaNet builds its head
        ("MODEL.BACKBONE.NAME", BACKBONE_REGISTRY, True),
        ("MODEL.ANCHOR_GENERATOR.NAME", ANCHOR_GENERATOR_REGISTRY, False),
    ]
    if meta is not None and issubclass(meta, GeneralizedRCNN):
        used.append(("MODEL.PROPOSAL_GENERATOR.NAME", PROPOSAL_GENERATOR_REGISTRY, False))
        used.append(("MODEL.RPN.HEAD_NAME", RPN_HEAD_REGISTRY, True))
        name = m.ROI_HEADS.NAME
        res5 = name in ROI_HEADS_REGISTRY and issubclass(ROI_HEADS_REGISTRY.get(name), Res5ROIHeads)
        # Res5ROIHeads runs res5 as its box head, built by the ROI heads' own code.
        used.append(("MODEL.ROI_HEADS.NAME", ROI_HEADS_REGISTRY, res5))
        if not res5:
            used.append(("MODEL.ROI_BOX_HEAD.NAME", ROI_BOX_HEAD_REGISTRY, True))
        if m.MASK_ON:
            used.append(("MODEL.ROI_MASK_HEAD.NAME", ROI_MASK_HEAD_REGISTRY, True))
        if m.KEYPOINT_ON:
            used.append(("MODEL.ROI_KEYPOINT_HEAD.NAME", ROI_KEYPOINT_HEAD_REGISTRY, False))
    return used


@pytest.mark.parametrize("rel_path", ALL_YAMLS)
def test_every_registered_name_exists(rel_path):
    cfg = _merged(rel_path)
    for key, registry, _ in _used_names(cfg):
        name = _get(cfg, key)
        assert name in registry, f"{rel_path}: {key}={name!r} is not registered in {registry._name}"


@pytest.mark.parametrize("rel_path", COCO_YAMLS)
def test_normalized_components_are_gn_dets(rel_path):
    cfg = _merged(rel_path)
    for key, registry, normalized in _used_names(cfg):
        if not normalized:
            continue
        built_by = registry.get(_get(cfg, key)).__module__
        assert built_by.startswith("gn_det."), f"{rel_path}: {key} is built by {built_by}"


@pytest.mark.parametrize("rel_path", MODELS)
def test_file_name_says_the_norm_of_each_component(rel_path):
    cfg = _merged(rel_path)
    tag = _norm_tag(rel_path)
    assert tag in NORM_TAGS, f"{rel_path}: norm suffix {tag!r}; valid: {sorted(NORM_TAGS)}"
    for component in _model_components(cfg):
        assert _get(cfg, NORM_KEYS[component]) == NORM_TAGS[tag][component], (rel_path, component)
    assert cfg.MODEL.GN.WEIGHT_STD == (tag == "gn_ws")
    assert cfg.MODEL.RPN.NORM == ""  # the paper's RPN has no norm
    channels = re.search(r"_(\d+)ch(?:_|$)", _stem(rel_path))
    assert cfg.MODEL.GN.CHANNELS_PER_GROUP == (int(channels.group(1)) if channels else 0)
    assert cfg.MODEL.RESNETS.ZERO_INIT_RESIDUAL == _stem(rel_path).endswith("_zero_init")
    assert cfg.MODEL.MASK_ON == ("mask_rcnn" in _stem(rel_path))
    if _stem(rel_path).startswith("scratch_"):
        assert cfg.MODEL.WEIGHTS == "" and cfg.MODEL.BACKBONE.FREEZE_AT == 0


@pytest.mark.parametrize("rel_path", MODELS)
def test_box_head_is_the_papers_4conv1fc(rel_path):
    cfg = _merged(rel_path)
    if "BOX_HEAD" in _model_components(cfg):
        box = cfg.MODEL.ROI_BOX_HEAD
        assert (box.NUM_CONV, box.NUM_FC, box.CONV_DIM, box.FC_DIM) == (4, 1, 256, 1024)


# Baselines and variants -> their GN twin, and exactly the keys allowed (and required) to differ.
_NORMS = {f"MODEL.{k}.NORM" for k in ("RESNETS", "FPN", "ROI_BOX_HEAD", "ROI_MASK_HEAD")}
_BN_WEIGHTS = {"MODEL.WEIGHTS", "MODEL.RESNETS.STRIDE_IN_1X1"}
TWIN_RULES = (
    # BN*: the norm keys, and the ImageNet weights (with their stride convention) for that norm.
    (r"(.*)_frozenbn(_\dimg)?", r"\1_gn\2", _NORMS | _BN_WEIGHTS),
    # BN and SyncBN: the same, and PreciseBN to re-estimate statistics before evaluation.
    (r"(.*)_bn(_\dimg)?", r"\1_gn\2", _NORMS | _BN_WEIGHTS | {"TEST.PRECISE_BN.ENABLED"}),
    (r"(.*)_syncbn(_\dimg)?", r"\1_gn\2", _NORMS | _BN_WEIGHTS | {"TEST.PRECISE_BN.ENABLED"}),
    (r"(.*)_gn_ws(_\dimg)?", r"\1_gn\2", {"MODEL.GN.WEIGHT_STD"}),
    (
        r"(.*)_gn_\d+ch",
        r"\1_gn",
        {"MODEL.GN.CHANNELS_PER_GROUP", "MODEL.GN.BACKBONE.CHANNELS_PER_GROUP"},
    ),
    (r"(.*)_gn_zero_init", r"\1_gn", {"MODEL.RESNETS.ZERO_INIT_RESIDUAL"}),
    (r"scratch_(mask_rcnn_R_50_FPN_3x_gn)", r"\1", {"MODEL.WEIGHTS", "MODEL.BACKBONE.FREEZE_AT"}),
)


def _twin_pairs():
    pairs = []
    for rel_path in MODELS:
        for pattern, replacement, allowed in TWIN_RULES:
            match = re.fullmatch(pattern, _stem(rel_path))
            if match:
                twin = str(Path(rel_path).with_name(match.expand(replacement) + ".yaml"))
                pairs.append(pytest.param(rel_path, twin, allowed, id=_stem(rel_path)))
                break
    return pairs


def test_every_baseline_and_variant_has_a_twin_rule():
    paired = {p.values[0] for p in _twin_pairs()}
    for norm in ("frozenbn", "bn", "syncbn", "gn_ws"):
        for rel_path in MODELS:
            if _norm_tag(rel_path) == norm and "_zero_init" not in rel_path:
                assert rel_path in paired, rel_path
    assert len(paired) >= 20


@pytest.mark.parametrize("rel_path,twin,allowed", _twin_pairs())
def test_differs_from_its_gn_twin_only_in_norm_settings(rel_path, twin, allowed):
    assert twin in COCO_YAMLS, f"{rel_path}: its twin {twin} does not exist"
    differing = _differing_keys(_merged(rel_path), _merged(twin))
    unexpected = differing - allowed
    assert not unexpected, f"{rel_path} vs {twin}: unexpected differences {sorted(unexpected)}"
    # ...and every listed setting really differs (a variant identical to its twin is a mistake).
    assert (
        differing == allowed
    ), f"{rel_path} vs {twin}: {sorted(allowed - differing)} do not differ"


@pytest.mark.parametrize("rel_path", COCO_YAMLS)
def test_weights_come_with_their_pixel_and_stride_settings(rel_path):
    cfg = _merged(rel_path)
    m = cfg.MODEL
    assert cfg.INPUT.FORMAT == "BGR" and m.PIXEL_MEAN == pytest.approx(BGR_MEAN)
    if m.WEIGHTS == "":
        assert m.BACKBONE.FREEZE_AT == 0, "from scratch, every stage must train"
        return
    assert m.WEIGHTS in WEIGHT_FAMILIES, f"{rel_path}: weights {m.WEIGHTS!r} are not a known family"
    family = WEIGHT_FAMILIES[m.WEIGHTS]
    assert m.RESNETS.DEPTH == family["depth"]
    assert m.RESNETS.NUM_GROUPS == family["groups"]
    assert m.RESNETS.NORM in family["norms"]
    assert m.RESNETS.STRIDE_IN_1X1 == family["stride_in_1x1"]
    assert m.PIXEL_STD == pytest.approx(family["std"])


@pytest.mark.parametrize(
    "weights", sorted(w for w in WEIGHT_FAMILIES if w.startswith("catalog://"))
)
def test_catalog_weights_exist_in_detectron2s_model_catalog(weights):
    url = ModelCatalog.get(weights[len("catalog://") :])
    assert url.startswith("https://dl.fbaipublicfiles.com/detectron/ImageNetPretrained/")


@pytest.mark.parametrize("rel_path", COCO_YAMLS)
def test_coco_2017_through_detectron2s_builtin_names(rel_path):
    cfg = _merged(rel_path)
    assert tuple(cfg.DATASETS.TRAIN) == ("coco_2017_train",)
    assert tuple(cfg.DATASETS.TEST) == ("coco_2017_val",)
    registered = set(DatasetCatalog.list())
    assert {"coco_2017_train", "coco_2017_val"} <= registered


def test_configs_page_lists_every_config():
    # The Synthetic family is documented with the tools that use it.
    text = (REPO / "docs" / "configs.md").read_text()
    missing = [p for p in COCO_YAMLS if f"configs/{p}" not in text]
    assert not missing, f"docs/configs.md does not list {missing}"
