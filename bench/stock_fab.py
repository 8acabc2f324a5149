"""The peer for the list benchmark: a stock Flask-AppBuilder 5.3 ModelView, default settings,
over the same `client` table ClientDesk uses (spec 10). Serve it with gunicorn like ClientDesk:

    BENCH_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/clientdesk_bench \
      .venv/bin/gunicorn -w 2 -b 127.0.0.1:5102 'bench.stock_fab:create_stock_app()'
"""

import os

from flask import Flask
from flask_appbuilder import AppBuilder, Model, ModelView
from flask_appbuilder.models.sqla.base import SQLA
from flask_appbuilder.models.sqla.interface import SQLAInterface
from sqlalchemy import Boolean, Column, DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.orm import relationship


class StockProject(Model):
    __tablename__ = "project"
    id = Column(Integer, primary_key=True)
    name = Column(String(100))

    def __repr__(self):
        return self.name


class StockDesk(Model):
    __tablename__ = "desk"
    id = Column(Integer, primary_key=True)
    name = Column(String(100))
    project_id = Column(Integer, ForeignKey("project.id"))

    def __repr__(self):
        return self.name


class StockStatus(Model):
    __tablename__ = "client_status"
    id = Column(Integer, primary_key=True)
    label = Column(String(64))

    def __repr__(self):
        return self.label


class StockClient(Model):
    __tablename__ = "client"
    id = Column(Integer, primary_key=True)
    uid = Column(String(16))
    client_type = Column(String(10))
    email = Column(String(254))
    first_name = Column(String(100))
    last_name = Column(String(100))
    full_name = Column(String(300))
    phone = Column(String(20))
    country = Column(String(2))
    description = Column(Text)
    processed = Column(Boolean)
    created_at = Column(DateTime)
    project_id = Column(Integer, ForeignKey("project.id"))
    desk_id = Column(Integer, ForeignKey("desk.id"))
    status_id = Column(Integer, ForeignKey("client_status.id"))
    project = relationship(StockProject)
    desk = relationship(StockDesk)
    status = relationship(StockStatus)


class ClientStockView(ModelView):
    """Default settings: only the columns shown are declared, as a FAB user would start."""

    datamodel = SQLAInterface(StockClient)
    list_columns = ["email", "id", "uid", "full_name", "phone", "client_type", "country", "description",
                    "desk.name", "status.label"]
    base_order = ("created_at", "desc")


def create_stock_app():
    app = Flask(__name__)
    app.config.update(
        SQLALCHEMY_DATABASE_URI=os.environ.get("BENCH_DATABASE_URL",
                                               "postgresql+psycopg://postgres@127.0.0.1:5432/clientdesk_bench"),
        SECRET_KEY="bench-only-secret-key-0123456789abcdef",
        WTF_CSRF_ENABLED=False, FAB_CREATE_DB=False,
        FAB_UPDATE_PERMS=os.environ.get("STOCK_UPDATE_PERMS", "0") == "1",
        FAB_PASSWORD_HASH_METHOD="scrypt")
    db = SQLA(model_class=Model)
    with app.app_context():
        db.init_app(app)
        appbuilder = AppBuilder()
        appbuilder.init_app(app, db.session)
        appbuilder.add_view(ClientStockView, "Clients (stock)")
    return app
