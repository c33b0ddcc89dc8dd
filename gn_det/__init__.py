"""gn_det: Group Normalization for Detectron2.

``import gn_det`` registers gn_det's backbones and heads in Detectron2's registries, and its
embedded datasets (``gn_det_shapes_train`` / ``gn_det_shapes_val``) in Detectron2's catalogs.
Without a working detectron2 the import fails at once with instructions, never half-way.
"""
from .environment import require_detectron2

require_detectron2()

from .config import add_gn_config  # noqa: E402
from . import layers  # noqa: E402,F401
from . import modeling  # noqa: E402,F401  (registers backbones and heads)
from . import data  # noqa: E402,F401  (registers the embedded datasets)
from . import model_zoo  # noqa: E402,F401  (gn_det's configs, as installed)

__version__ = "0.1.0"
__all__ = ["add_gn_config", "layers", "modeling", "data", "model_zoo", "__version__"]
