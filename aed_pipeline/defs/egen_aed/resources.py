"""The e-gen AED API resource, registered as ``egen_api`` from the environment."""

from __future__ import annotations

from typing import Literal

import dagster as dg

from aed_pipeline.defs.shared.resources import ApiResource, env_secret, env_setting
from aed_pipeline.lib.core import settings
from aed_pipeline.lib.egen_aed.client import EgenClient


class EgenApiResource(ApiResource):
    """The e-gen AED API (data.go.kr AEDInfoInqireService), or the simulator without a key."""

    base_url: str = settings.DEFAULT_EGEN_BASE_URL
    num_of_rows: int = 5000
    response_type: Literal["xml", "json"] = "xml"
    read_timeout_seconds: float = 120.0

    def client(self) -> EgenClient:
        """A client for one run; close it (it is a context manager) when done."""
        key, http = self._endpoint(settings.EGEN_SERVICE_KEY_ENV, "the e-gen AED API")
        return EgenClient(
            key,
            self.base_url,
            num_of_rows=self.num_of_rows,
            response_type=self.response_type,
            http=http,
        )


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(
        resources={
            "egen_api": EgenApiResource(
                service_key=env_secret(settings.EGEN_SERVICE_KEY_ENV),
                base_url=env_setting(settings.EGEN_BASE_URL_ENV, settings.DEFAULT_EGEN_BASE_URL),
            ),
        }
    )
