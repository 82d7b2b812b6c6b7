"""The platform's configuration, read from the environment in one place.

Every variable is optional: with none set, the platform runs on an embedded PostgreSQL under
``AED_PIPELINE_HOME`` and the built-in API simulator. The README's table of variables is the
user-facing copy of this module.
"""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "AED_PIPELINE_HOME"
DATABASE_URL_ENV = "AED_PIPELINE_DATABASE_URL"
EGEN_SERVICE_KEY_ENV = "EGEN_SERVICE_KEY"
EGEN_BASE_URL_ENV = "EGEN_BASE_URL"
AT_FLOWER_SERVICE_KEY_ENV = "AT_FLOWER_SERVICE_KEY"
AT_FLOWER_BASE_URL_ENV = "AT_FLOWER_BASE_URL"
ARCHIVE_URL_ENV = "AED_PIPELINE_ARCHIVE_URL"
SLACK_WEBHOOK_URL_ENV = "AED_PIPELINE_SLACK_WEBHOOK_URL"
UI_URL_ENV = "AED_PIPELINE_UI_URL"
FLOWER_DEADLINE_ENV = "AED_PIPELINE_FLOWER_DEADLINE"

DEFAULT_HOME = ".aed_pipeline"
DEFAULT_EGEN_BASE_URL = "https://apis.data.go.kr/B552657/AEDInfoInqireService"
DEFAULT_AT_FLOWER_BASE_URL = "https://flower.at.or.kr/api/returnData.api"
DEFAULT_UI_URL = "http://127.0.0.1:3000"


def pipeline_home() -> Path:
    """The folder holding the embedded database and the raw archive (created on demand)."""
    return Path(os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser().resolve()


def env_or_none(name: str) -> str | None:
    """An environment variable's value, with unset and empty treated alike."""
    value = os.environ.get(name, "").strip()
    return value or None


def archive_url() -> str:
    """Where raw API pages are archived: ``AED_PIPELINE_ARCHIVE_URL`` or ``{home}/archive``."""
    return env_or_none(ARCHIVE_URL_ENV) or str(pipeline_home() / "archive")
