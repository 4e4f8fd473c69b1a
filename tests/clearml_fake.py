"""A stand-in for ``clearml.Task`` with a server's memory, for the online paths' contract tests.

Why a replacement: the online paths need a ClearML server (apiserver + MongoDB + Elasticsearch),
which cannot run here, and ClearML's offline mode refuses ``clone``, ``enqueue``, ``get_tasks``
and imports. The tests swap only the ``Task`` class at ``sst.tracking.clearml_task`` (the kit's
one door to it); everything above that boundary is the real code. The fake behaves as the
installed library documents where the kit relies on it:

- ``get_tasks(tags=…)`` joins tags with OR unless the list starts with ``"__$all"`` (AND); a
  ``"-tag"`` or ``"__$not", "tag"`` excludes (``clearml.Task.get_tasks`` docstring). Operator
  groups in the middle of a list are not modelled and raise.
- ``import_offline_session(zip)`` reads the real offline session format (``task.json``,
  ``metrics.jsonl``) into a server task: parameters, tags, script, single values.
- ``upload_artifact`` keeps a copy of the file (a files server); ``artifacts[name]
  .get_local_copy()`` returns a downloaded copy.
- ``set_script`` edits ``data.script`` as the library does; ``set_parameters`` replaces every
  parameter, ``clone`` keeps the source's tags and parameters.
- ``connect(dict, name)`` writes the dict; under an agent (``FakeTask.remote``) it instead takes
  the task's values for keys the task already has, unless ``ignore_remote_overrides`` is set —
  locally that choice is stored as the ``<name>/_ignore_remote_overrides_`` parameter the remote
  run reads back (``Task.connect``, ``Task._handle_ignore_remote_overrides``).
- ``enqueue`` hands the task to ``FakeTask.agent`` when a test sets one: the agent's side,
  typically the real ``sst train`` run with ``FakeTask.remote`` and ``CLEARML_TASK_ID`` set.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar


def _flat(values: dict, prefix: str) -> dict[str, str]:
    """ClearML's flattening of a connected dict: nested keys joined with "/", values as text."""
    out: dict[str, str] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}/{key}"))
        else:
            out[f"{prefix}/{key}"] = str(value)
    return out


def tid(n: int) -> str:
    """The n-th task id the fake server hands out (ClearML ids are 32 hex digits)."""
    return f"{n:032x}"


def tags_match(tags: list[str], have: set[str]) -> bool:
    """ClearML's tag filter for a flat list (see the module docstring)."""
    mode, include, exclude = "or", [], []
    negate = False
    for i, token in enumerate(tags):
        if token in ("__$all", "__$and", "__$any", "__$or"):
            if i:
                raise NotImplementedError("operator groups inside a tag list are not modelled")
            mode = "and" if token in ("__$all", "__$and") else "or"
        elif token == "__$not":
            negate = True
        elif negate or token.startswith("-"):
            exclude.append(token.removeprefix("-") if not negate else token)
            negate = False
        else:
            include.append(token)
    if any(t in have for t in exclude):
        return False
    if not include:
        return True
    hits = [t in have for t in include]
    return all(hits) if mode == "and" else any(hits)


class Artifact:
    def __init__(self, stored: Path) -> None:
        self.stored = stored

    def get_local_copy(self, raise_on_error: bool = False, **_: Any) -> str:
        copy = Path(tempfile.mkdtemp(prefix="download-")) / self.stored.name
        shutil.copyfile(self.stored, copy)
        return str(copy)


class Logger:
    """A task's logger: every ``report_*`` call is kept; single values become the task's."""

    def __init__(self, task: FakeTask) -> None:
        self.task = task

    def report_single_value(self, name: str, value: float) -> None:
        self.task.single_values[name] = float(value)

    def __getattr__(self, name: str) -> Any:
        if not name.startswith("report_"):
            raise AttributeError(name)
        return lambda *a, **k: self.task.reports.append((name, a, k))


class FakeTask:
    """One server, class-wide: ``FakeTask.reset(files)`` starts an empty one."""

    calls: ClassVar[list[tuple]] = []
    store: ClassVar[dict[str, FakeTask]] = {}
    files: ClassVar[Path] = Path(tempfile.gettempdir())
    remote: ClassVar[bool] = False  # True while a fake agent executes a task
    agent: ClassVar[Callable[[FakeTask], None] | None] = None
    TaskTypes = SimpleNamespace(
        controller="controller", training="training", data_processing="data_processing", qc="qc"
    )
    _ids = itertools.count(1)

    @classmethod
    def reset(cls, files: Path) -> None:
        cls.calls, cls.store, cls.files, cls._ids = [], {}, files, itertools.count(1)
        cls.remote, cls.agent = False, None

    def __init__(self, name: str, project: str = "sst", task_type: str = "training") -> None:
        self.id = tid(next(FakeTask._ids))
        self.name, self.project, self.type = name, project, task_type
        self.tags: list[str] = []
        self.parameters: dict[str, str] = {}
        self.single_values: dict[str, float] = {}
        self.status = "created"
        self.artifacts: dict[str, Artifact] = {}
        self.reports: list[tuple] = []
        self.data = SimpleNamespace(
            script=SimpleNamespace(
                repository="", branch="", version_num="", diff="", working_dir="", entry_point=""
            )
        )
        FakeTask.store[self.id] = self

    # -- class-level API ------------------------------------------------------------------
    @classmethod
    def set_random_seed(cls, seed: Any) -> None:
        cls.calls.append(("set_random_seed", seed))

    @classmethod
    def running_locally(cls) -> bool:
        return not cls.remote

    @classmethod
    def init(cls, **kw: Any) -> FakeTask:
        cls.calls.append(("init", kw["project_name"], kw["task_name"], kw["task_type"]))
        if cls.remote:  # under an agent, Task.init returns the task being executed
            return cls.store[os.environ["CLEARML_TASK_ID"]]
        return cls(kw["task_name"], kw["project_name"], kw["task_type"])

    @classmethod
    def get_tasks(cls, **kw: Any) -> list[FakeTask]:
        tags = list(kw.get("tags") or [])
        archived = kw.get("allow_archived", True)  # the library's default
        cls.calls.append(("get_tasks", kw["project_name"], tuple(tags), archived))
        name = kw.get("task_name")
        types = (kw.get("task_filter") or {}).get("type")
        return [
            t
            for t in cls.store.values()
            if t.project == kw["project_name"]
            and (name is None or re.search(name, t.name))
            and (types is None or t.type in types)
            and tags_match(tags, set(t.tags))
        ]

    @classmethod
    def create(cls, **kw: Any) -> FakeTask:
        cls.calls.append(
            (
                "create",
                kw["module"],
                kw["repo"],
                kw["commit"],
                kw["docker"],
                kw["docker_args"],
                kw["add_task_init_call"],
            )
        )
        task = cls(kw["task_name"], kw["project_name"], kw["task_type"])
        script = task.data.script
        script.repository, script.version_num = kw["repo"], kw["commit"]
        script.entry_point = f"-m {kw['module']}"
        return task

    @classmethod
    def clone(cls, source_task: FakeTask, name: str, parent: str) -> FakeTask:
        cls.calls.append(("clone", source_task.id, name, parent))
        task = cls(name, source_task.project, source_task.type)
        task.parameters = dict(source_task.parameters)
        task.tags = list(source_task.tags)
        task.data.script = SimpleNamespace(**vars(source_task.data.script))
        return task

    @classmethod
    def enqueue(cls, task: FakeTask, queue_name: str) -> dict:
        cls.calls.append(("enqueue", task.id, queue_name))
        if cls.agent is not None:
            cls.agent(task)
        task.status = "completed"
        return {"queued": 1}

    @classmethod
    def get_task(cls, task_id: str) -> FakeTask:
        return cls.store[task_id]

    @classmethod
    def import_offline_session(cls, session_folder_zip: str) -> str:
        cls.calls.append(("import_offline_session", session_folder_zip))
        with zipfile.ZipFile(session_folder_zip) as z:
            recorded = json.loads(z.read("task.json"))
            lines = z.read("metrics.jsonl").decode().splitlines()  # (a folder works too: not used)
        task = cls(recorded["name"], recorded["project_name"], recorded["type"])
        task.tags = list(recorded.get("tags", []))
        task.parameters = {
            f"{section}/{key}": item["value"]
            for section, values in recorded.get("hyperparams", {}).items()
            for key, item in values.items()
        }
        task.data.script = SimpleNamespace(**recorded["script"])
        task.single_values = {
            ev["variant"]: float(ev["value"])
            for line in lines
            if line.strip()
            for ev in json.loads(line)
            if ev.get("metric") == "Summary"
        }
        task.status = "completed"
        return task.id

    # -- instance API ---------------------------------------------------------------------
    def connect(self, values: dict, name: str, ignore_remote_overrides: bool = False) -> dict:
        self.calls.append(("connect", self.id, name, dict(values)))
        flag = f"{name}/_ignore_remote_overrides_"
        if FakeTask.remote and self.parameters.get(flag, str(ignore_remote_overrides)) != "True":
            return values  # the task's (maybe edited) values win: its parameters stay
        if not FakeTask.remote and ignore_remote_overrides:
            self.parameters[flag] = "True"
        self.parameters.update(_flat(values, name))
        return values

    def set_tags(self, tags: list[str]) -> None:
        self.calls.append(("set_tags", self.id, list(tags)))
        self.tags = list(tags)

    def add_tags(self, tags: list[str]) -> None:
        self.calls.append(("add_tags", self.id, list(tags)))
        self.tags += list(tags)

    def set_parameters(self, params: dict) -> None:
        self.calls.append(("set_parameters", self.id, dict(params)))
        self.parameters = dict(params)  # replaces all (update_parameters would merge)

    def get_parameters(self) -> dict[str, str]:
        return dict(self.parameters)

    def get_reported_single_values(self) -> dict[str, float]:
        return dict(self.single_values)

    def get_status(self) -> str:
        return self.status

    def set_base_docker(self, docker_image: str, docker_arguments: str) -> None:
        self.calls.append(("set_base_docker", self.id, docker_image, docker_arguments))

    def _wait_for_repo_detection(self, timeout: float) -> None:
        pass

    def set_script(self, **kw: Any) -> None:
        self.calls.append(("set_script", self.id, kw.get("entry_point")))
        script = self.data.script
        for key, attr in (("repository", "repository"), ("commit", "version_num")):
            if kw.get(key) is not None:
                setattr(script, attr, kw[key])
        for key in ("diff", "working_dir", "entry_point"):
            if kw.get(key) is not None:
                setattr(script, key, kw[key])

    def upload_artifact(self, name: str, artifact_object: str, wait_on_upload: bool) -> bool:
        self.calls.append(("upload_artifact", self.id, name))
        stored = FakeTask.files / self.id / name
        stored.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(artifact_object, stored)
        self.artifacts[name] = Artifact(stored)
        return True

    def get_logger(self) -> Logger:
        return Logger(self)

    def get_output_log_web_page(self) -> str:
        return f"https://app.example/projects/p/experiments/{self.id}/output/log"

    def close(self) -> None:
        self.calls.append(("close", self.id))
