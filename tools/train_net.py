#!/usr/bin/env python3
"""Train, resume, fine-tune or evaluate a gn_det model (Detectron2's train_net conventions).

    python3 tools/train_net.py --config-file configs/Synthetic/mask_rcnn_R_18_FPN_gn_scratch.yaml
    python3 tools/train_net.py --config-file CFG --resume                   # continue a run
    python3 tools/train_net.py --config-file CFG --eval-only MODEL.WEIGHTS output/model_final.pth
    python3 tools/train_net.py --config-file CFG --num-gpus 8               # one process per GPU
    python3 tools/train_net.py --config-file CFG --dataset my_train a.json imgs/ \\
        --dataset my_val b.json imgs/ DATASETS.TRAIN "('my_train',)" DATASETS.TEST "('my_val',)" \\
        MODEL.WEIGHTS output/model_final.pth                                # fine-tune

Without GPUs, --num-gpus N starts N CPU processes that train together over Gloo. The flow
(Trainer, main, launch) is gn_det/engine/train_net.py.
"""
import gn_det  # noqa: F401  registers gn_det's models and datasets
from gn_det.engine.train_net import invoke_main

if __name__ == "__main__":
    invoke_main()
