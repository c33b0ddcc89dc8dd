"""Train, resume, fine-tune or evaluate a gn_det model (Detectron2's train_net conventions); a
``.py`` (LazyConfig) config trains with Detectron2's lazy flow.

    gn-det-train --config-file configs/Synthetic/mask_rcnn_R_18_FPN_gn_scratch.yaml
    gn-det-train --config-file Synthetic/mask_rcnn_R_18_FPN_gn_scratch.py train.max_iter=100
    gn-det-train --config-file CFG --resume                   # continue a run
    gn-det-train --config-file CFG --eval-only MODEL.WEIGHTS output/model_final.pth
    gn-det-train --config-file CFG --num-gpus 8               # one process per GPU
    gn-det-train --config-file CFG --dataset my_train a.json imgs/ \\
        --dataset my_val b.json imgs/ DATASETS.TRAIN "('my_train',)" DATASETS.TEST "('my_val',)" \\
        MODEL.WEIGHTS output/model_final.pth                  # fine-tune

``--config-file`` is a local file or the name of a config installed with gn_det
(``gn_det.model_zoo.list_configs()``). Without GPUs, --num-gpus N starts N CPU processes that
train together over Gloo. The flow (Trainer, main, launch) is gn_det/engine/train_net.py.
"""
from ..engine.train_net import invoke_main

__all__ = ["main"]


def main(argv=None) -> int:
    """``gn-det-train``: ``invoke_main``, exit status 0 when it returns (errors raise)."""
    invoke_main(argv, epilog=__doc__)
    return 0
