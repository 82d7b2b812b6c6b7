"""The aT flower auction API resource, registered as ``at_flower_api`` from the environment."""

from __future__ import annotations

from typing import Literal

import dagster as dg

from aed_pipeline.defs.shared.resources import ApiResource, env_secret, env_setting
from aed_pipeline.lib.at_flower.client import AtFlowerClient
from aed_pipeline.lib.core import settings


class AtFlowerApiResource(ApiResource):
    """The aT flower auction API (화훼유통정보 f001), or the simulator without a key."""

    base_url: str = settings.DEFAULT_AT_FLOWER_BASE_URL
    count_per_page: int = 1000
    data_type: Literal["json", "xml"] = "json"
    read_timeout_seconds: float = 60.0

    def client(self) -> AtFlowerClient:
        """A client for one run; close it (it is a context manager) when done."""
        key, http = self._endpoint(settings.AT_FLOWER_SERVICE_KEY_ENV, "the aT flower API")
        return AtFlowerClient(
            key,
            self.base_url,
            count_per_page=self.count_per_page,
            data_type=self.data_type,
            http=http,
        )


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(
        resources={
            "at_flower_api": AtFlowerApiResource(
                service_key=env_secret(settings.AT_FLOWER_SERVICE_KEY_ENV),
                base_url=env_setting(settings.AT_FLOWER_BASE_URL_ENV, settings.DEFAULT_AT_FLOWER_BASE_URL),
            ),
        }
    )
