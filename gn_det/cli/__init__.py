"""gn_det's command lines, installed as console scripts (setup.py ``entry_points``); the scripts
in the repository's ``tools/`` call the same functions, as Detectron2's tools call
``invoke_main()``.

| command | function | script |
|---|---|---|
| ``gn-det-train`` | ``gn_det.cli.train:main`` (``gn_det.engine.train_net.invoke_main``) | tools/train_net.py |
| ``gn-det-evaluate`` | ``gn_det.cli.evaluate:main`` | tools/evaluate.py |
| ``gn-det-export`` | ``gn_det.export.cli:export_main`` | tools/export_model.py |
| ``gn-det-validate`` | ``gn_det.cli.validate:main`` | tools/validate.py |
| ``gn-det-compare`` | ``gn_det.cli.compare:main`` | tools/compare.py |
| ``gn-det-sweep`` | ``gn_det.sweep.cli:sweep_main`` | tools/sweep.py |
| ``gn-det-benchmark`` | ``gn_det.cli.benchmark:main`` | tools/benchmark.py |
| ``gn-det-visualize`` | ``gn_det.cli.visualize:main`` | tools/visualize.py |
| ``gn-det-convert-to-coco`` | ``gn_det.cli.convert_to_coco:main`` | tools/convert_to_coco.py |

Each ``main(argv=None)`` returns the exit status (console scripts pass it to ``sys.exit``).
"""
# Command name -> "module:function", the one list setup.py's console_scripts are made from
# (setup.py reads this file as text: importing gn_det there would need torch and detectron2).
CONSOLE_SCRIPTS = {
    "gn-det-train": "gn_det.cli.train:main",
    "gn-det-evaluate": "gn_det.cli.evaluate:main",
    "gn-det-export": "gn_det.export.cli:export_main",
    "gn-det-validate": "gn_det.cli.validate:main",
    "gn-det-compare": "gn_det.cli.compare:main",
    "gn-det-sweep": "gn_det.sweep.cli:sweep_main",
    "gn-det-benchmark": "gn_det.cli.benchmark:main",
    "gn-det-visualize": "gn_det.cli.visualize:main",
    "gn-det-convert-to-coco": "gn_det.cli.convert_to_coco:main",
}
