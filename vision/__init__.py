"""Vision: backbones behind one interface (`create_backbone`), image data loaders, augmentation, `lab summary`
and the image_classification task.

Importing this package registers every backbone (in `vision.registry.BACKBONES` and lab's `MODELS`),
the `summary` command and the image_classification task.
"""
from vision.builder import build_from_layers
from vision.registry import backbone_from_config, create_backbone, list_backbones

# After the names above: the task module imports them from this package.
from vision import backbones, classification, cli  # noqa: E402,F401,I001  (registrations)

__all__ = ["backbone_from_config", "build_from_layers", "create_backbone", "list_backbones"]
