"""ClientDesk application factory."""

from flask import Flask


def create_app(config_object="config.Config", **overrides):
    from . import setup
    from .core import speed

    app = Flask(__name__, instance_relative_config=False)
    app.config.from_object(config_object)
    app.config.update(overrides)
    setup.check_config(app)
    setup.init_extensions(app)
    with app.app_context():
        setup.init_appbuilder(app)
        setup.register_all(app)
    setup.init_security_hooks(app)
    setup.init_locale_hooks(app)
    speed.install(app)  # after Flask-Babel installed its template callables
    setup.register_cli(app)
    return app
