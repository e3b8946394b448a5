"""segbench's architectures. Importing this package registers every model."""
from models.registry import UnknownModelError, create_model, list_models, register_model, resolve_name

__all__ = ["UnknownModelError", "create_model", "list_models", "register_model", "resolve_name"]
