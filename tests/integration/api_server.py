"""The API served by uvicorn in a thread of the test process, against the session's Kafka
and Redis, on a free port."""

from __future__ import annotations

import threading
import time

import httpx
import uvicorn

from services.api.app import create_app
from services.common.settings import ApiToken, Settings
from services.infra.process import free_port

WRITE_TOKEN = "w-" + "0123456789abcdef" * 2
READ_TOKEN = "r-" + "fedcba9876543210" * 2


def api_settings(settings: Settings, **changes: object) -> Settings:
    tokens = [
        ApiToken(name="operator", token=WRITE_TOKEN, scopes=("streams:write", "events:read")),  # type: ignore[arg-type]
        ApiToken(name="viewer", token=READ_TOKEN, scopes=("events:read",)),  # type: ignore[arg-type]
    ]
    return settings.model_copy(update={"api_tokens": tokens, "api_port": free_port(), **changes})


class ApiServer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = f"http://127.0.0.1:{settings.api_port}"
        config = uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=settings.api_port, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ApiServer:
        self.thread.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("the API did not start within 60 s")

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        if self.thread.is_alive():
            raise RuntimeError(f"the API at {self.url} did not stop within 15 s")

    def client(self, token: str | None = WRITE_TOKEN) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)
