"""Entry point for gunicorn: ``gunicorn webapp.wsgi:app``."""

import logging

from .app import create_app
from .settings import Settings, SettingsError

try:
    _settings = Settings.from_env()
except SettingsError as exc:
    # One readable line before gunicorn's traceback; raising (not sys.exit) makes gunicorn
    # stop with "Worker failed to boot" instead of respawning the worker forever.
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("webapp").critical("configuration error: %s", exc)
    raise

logging.basicConfig(level=_settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
# The SDK logs every HTTP request at INFO; keep its warnings and errors only.
logging.getLogger("azure").setLevel(max(logging.WARNING, logging.getLevelName(_settings.log_level)))

app = create_app(_settings)
