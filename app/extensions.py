"""Extension singletons, created without an app and bound in create_app()."""

from flask_appbuilder import Model
from flask_appbuilder.models.sqla.base import SQLA
from flask_migrate import Migrate
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import MetaData

# Deterministic constraint names so Alembic migrations are stable across databases.
Model.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
assert isinstance(Model.metadata, MetaData)

# db.Model IS flask_appbuilder.Model: one MetaData, so Alembic sees FAB's ab_* tables too.
db = SQLA(model_class=Model)
migrate = Migrate()
csrf = CSRFProtect()
