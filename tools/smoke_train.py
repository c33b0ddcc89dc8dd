#!/usr/bin/env python3
"""Smoke run: build Detectron2's GN Mask R-CNN (R50-FPN) on CPU and take one training step on a
synthetic image. Proves the environment (torch pair, detectron2's ops, gn_det) end to end."""
import time

import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Boxes, Instances
from detectron2.utils.events import EventStorage
from detectron2 import model_zoo

from gn_det import add_gn_config


def main():
    torch.manual_seed(0)
    cfg = get_cfg()
    add_gn_config(cfg)
    cfg.merge_from_file(model_zoo.get_config_file("Misc/mask_rcnn_R_50_FPN_3x_gn.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    model = build_model(cfg).train()
    image = torch.randint(0, 255, (3, 256, 320), dtype=torch.uint8)
    masks = torch.zeros(1, 256, 320, dtype=torch.bool)
    masks[0, 60:160, 80:200] = True
    inst = Instances((256, 320), gt_boxes=Boxes(torch.tensor([[80.0, 60.0, 200.0, 160.0]])),
                     gt_classes=torch.tensor([3]), gt_masks=BitMasks(masks))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)
    start = time.perf_counter()
    with EventStorage(0):  # Detectron2's models log training metrics to an EventStorage
        losses = model([{"image": image, "instances": inst}])
        total = sum(losses.values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    print("one training step of GN Mask R-CNN R50-FPN on CPU: "
          + ", ".join(f"{k}={v.item():.3f}" for k, v in losses.items())
          + f" ({time.perf_counter() - start:.1f}s)")


if __name__ == "__main__":
    main()
