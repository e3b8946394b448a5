"""segbench's architectures. Importing this package registers every model."""
from models.registry import (UnknownModelError, create_model, import_plugins, list_models, register_model,
                             resolve_name)

__all__ = ["UnknownModelError", "create_model", "import_plugins", "list_models", "register_model", "resolve_name"]
from models import fcdensenet, unet, adversarial  # noqa: E402,F401
from models import fcn, dilated, segnet, deeplab, deconvnet  # noqa: E402,F401
from models import torchvision_zoo  # noqa: E402,F401
