"""Imports every model module so the metadata is complete (FAB, Alembic and tests rely on it)."""

from .activity import models as activity_models  # noqa: F401
from .clients import models as clients_models  # noqa: F401
from .core import audit  # noqa: F401
from .core import security_version  # noqa: F401
from .core import settings_version  # noqa: F401
from .imports import models as imports_models  # noqa: F401
from .organisation import models as organisation_models  # noqa: F401
from .clients import list_models as clients_list_models  # noqa: F401
