"""A ClearML API server for tests, on 127.0.0.1: the REST API that the real clearml SDK and the
real clearml-agent call in the kit's journeys, and a file server, with the state in memory and
every request logged. It stands in for the server only (which needs MongoDB, Elasticsearch and
Redis, none of which the registries here ship); the SDK, the agent and `sst` are the real ones.

    server = ClearmlServer(tmp_path).start()
    os.environ.update(server.environment())   # CLEARML_API_HOST etc. for the SDK and the agent
    ...
    server.endpoints()                         # what was called, in order
    server.stop()

Each handler follows clearml-server's own source (allegroai/clearml-server v2.0.0): the file is
named beside it. An endpoint not implemented here answers an error naming it and is listed by
:meth:`ClearmlServer.unimplemented`, so a new SDK call fails a test instead of passing silently.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.clearml_server.http import ApiServer
from tests.clearml_server.services import Events, Models, Projects, Queues, Workers
from tests.clearml_server.tasks import Tasks

ACCESS_KEY, SECRET_KEY = "sst-test-access", "sst-test-secret"


class ClearmlServer:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.projects = Projects()
        self.queues = Queues()
        self.tasks = Tasks(self.projects.docs, self.queues)
        self.queues.tasks = self.tasks
        self.workers = Workers()
        self.events = Events(self.tasks.docs)
        self.models = Models(self.projects.docs)
        handlers: dict[str, Any] = {}
        for service in (self.projects, self.queues, self.tasks, self.workers, self.events):
            handlers |= service.handlers()
        handlers |= self.models.handlers()
        self.api = ApiServer(handlers, {ACCESS_KEY: SECRET_KEY}, folder / "fileserver")

    def start(self) -> ClearmlServer:
        self.api.start()
        return self

    def stop(self) -> None:
        self.api.stop()

    def environment(self) -> dict[str, str]:
        """What points the SDK and the agent at this server (and nothing else)."""
        return {
            "CLEARML_API_HOST": self.api.api_url,
            "CLEARML_WEB_HOST": self.api.api_url.replace("127.0.0.1", "localhost"),
            "CLEARML_FILES_HOST": self.api.files_url,
            "CLEARML_API_ACCESS_KEY": ACCESS_KEY,
            "CLEARML_API_SECRET_KEY": SECRET_KEY,
        }

    def endpoints(self) -> list[str]:
        return self.api.endpoints()

    def unimplemented(self) -> list[str]:
        return self.api.unimplemented()

    def task(self, task_id: str) -> dict[str, Any]:
        return self.tasks.docs.get(task_id)

    def stored(self, uri: str) -> Path:
        """Where the file server keeps the file an artifact's ``uri`` names."""
        from urllib.parse import unquote

        return self.api.files / unquote(uri.removeprefix(self.api.files_url + "/"))
