"""A ClearML task for a run: start it (online or offline), connect config, report, datasets, and
read an offline session back.

    python -c "from sst.tracking.tracker import start_task as s; s('sst', 'p', 'testing').close()"

Online when a ClearML server is configured (``CLEARML_API_HOST`` or a ``clearml.conf``), otherwise
offline (``CLEARML_OFFLINE_MODE``): the session lands in ``$CLEARML_CACHE_DIR/offline/<id>/``
(``task.json``, ``metrics.jsonl``) and is zipped at close; ``Task.import_offline_session(zip)`` on
a machine with a server uploads it later. Only the modules of :mod:`sst.tracking` import clearml.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sst.env.git import git_patch, git_state
from sst.errors import SstError
from sst.run.folder import FINGERPRINT, WEIGHTS, Run
from sst.tracking import registry
from sst.tracking.agent import container_arguments, container_image, remote_problem

SECRET_KEY = re.compile(
    r"(secret|password|passwd|token(?!izer)|credential|access_key|api_key)", re.I
)
REDACTED = "<redacted>"


def offline_forced() -> bool:
    """``CLEARML_OFFLINE_MODE`` set to a true value: offline whatever is configured."""
    return os.environ.get("CLEARML_OFFLINE_MODE", "").lower() in ("1", "true", "yes")


def config_file() -> str | None:
    """The ``clearml.conf`` the SDK reads, when there is one."""
    candidates = [os.environ.get("CLEARML_CONFIG_FILE"), "~/clearml.conf", "~/.clearml.conf"]
    return next((c for c in candidates if c and Path(c).expanduser().is_file()), None)


def server_configured() -> bool:
    """True when ClearML should talk to a server: credentials in the environment or a config
    file, and offline mode not forced."""
    if offline_forced():
        return False
    if os.environ.get("CLEARML_API_HOST") and os.environ.get("CLEARML_API_ACCESS_KEY"):
        return True
    return config_file() is not None


@dataclass(frozen=True)
class Connection:
    """Where this process's tasks go, as `sst doctor` shows it; credentials are named by where
    they come from, never shown."""

    online: bool
    why: str  # how that was decided
    server: str | None  # the API server the SDK would call
    web: str | None  # where task links point
    credentials: str  # where the key and secret come from, or "none"


def connection() -> Connection:
    """The SDK's own reading of the environment and ``clearml.conf`` (hosts, keys)."""
    from clearml.backend_api import Session
    from clearml.backend_api.session.defs import ENV_ACCESS_KEY, ENV_SECRET_KEY
    from clearml.config import config_obj

    conf = config_file()
    if ENV_ACCESS_KEY.get() and ENV_SECRET_KEY.get():
        credentials = "CLEARML_API_ACCESS_KEY and CLEARML_API_SECRET_KEY"
    elif config_obj.get("api.credentials.access_key", None):
        credentials = f"api.credentials in {conf}"
    else:
        credentials = "none"
    online = server_configured()
    if offline_forced():
        why = "CLEARML_OFFLINE_MODE is set"
    elif online:
        why = "CLEARML_API_HOST is set" if os.environ.get("CLEARML_API_HOST") else f"{conf}"
    else:
        why = "no server configured (clearml-init, or CLEARML_API_HOST and the two keys)"
    host = str(Session.get_api_server_host() or "") or None
    web = str(Session.get_app_server_host() or "") or None
    return Connection(online, why, host if online else None, web if online else None, credentials)


PING_TIMEOUT = 10.0  # seconds: the SDK itself retries an unreachable server for hours
_answered: set[str] = set()  # servers that answered this process's ping


def check_server() -> None:
    """One line when the configured server does not answer, or refuses the credentials; before
    the SDK's own calls, which retry an unreachable server for hours. Checked once a process."""
    import requests
    from clearml.backend_api import Session

    host = str(Session.get_api_server_host() or "").rstrip("/")
    if host in _answered:
        return
    try:
        requests.post(f"{host}/debug.ping", json={}, timeout=PING_TIMEOUT)
    except requests.RequestException as e:
        raise SstError(
            f"the ClearML server at {host} does not answer ({type(e).__name__})",
            fix="start it, or check CLEARML_API_HOST / api.api_server in clearml.conf; "
            "to work without one: CLEARML_OFFLINE_MODE=1 (sst upload shares the session later)",
        ) from None
    try:
        Session()  # logs in: a refused key or secret fails here, in one line
    except Exception as e:  # LoginError, MissingConfigError: the SDK's own types
        raise SstError(
            f"the ClearML server at {host} refused the credentials: {str(e).splitlines()[0]}",
            fix="check CLEARML_API_ACCESS_KEY and CLEARML_API_SECRET_KEY (or run clearml-init)",
        ) from None
    _answered.add(host)


def preflight(enabled: bool) -> None:
    """Before a verb writes anything: the configured server answers (when tracking is on)."""
    if enabled and server_configured():
        check_server()


def scrub(value: Any) -> Any:
    """A copy of ``value`` with every secret-looking key's value replaced, at any depth."""
    if isinstance(value, Mapping):
        return {k: (REDACTED if SECRET_KEY.search(str(k)) else scrub(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    return value


@dataclass
class Session:
    """What an offline session recorded: the task (``task.json``) and its reported events."""

    task: dict[str, Any]
    events: list[dict[str, Any]]

    @property
    def parameters(self) -> dict[str, str]:
        """Flat ``section/key`` → value, as a server task's ``get_parameters()``."""
        return {
            f"{section}/{name}": item.get("value", "")
            for section, values in self.task.get("hyperparams", {}).items()
            for name, item in values.items()
        }

    def configuration(self, name: str) -> dict[str, Any] | None:
        """A configuration object the run recorded (:meth:`Tracker.record`), as a server task's
        :func:`configuration`."""
        item = (self.task.get("configuration") or {}).get(name) or {}
        return _json_object(item.get("value"))

    @property
    def single_values(self) -> dict[str, float]:
        return {
            ev["variant"]: float(ev["value"])
            for ev in self.events
            if ev.get("type") == "training_stats_scalar" and ev.get("metric") == "Summary"
        }


def _json_object(text: str | None) -> dict[str, Any] | None:
    return json.loads(text) if text else None


def configuration(task: Any, name: str) -> dict[str, Any] | None:
    """A configuration object a task recorded (:meth:`Tracker.record`), or None."""
    return _json_object(task.get_configuration_object(name))


def read_session(path: Path) -> Session:
    """An offline session, zipped or as its folder (``task.json``, ``metrics.jsonl``)."""
    try:
        if path.is_dir():
            task = json.loads((path / "task.json").read_text())
            lines = (path / "metrics.jsonl").read_text().splitlines()
        else:
            with zipfile.ZipFile(path) as z:
                task = json.loads(z.read("task.json"))
                lines = z.read("metrics.jsonl").decode().splitlines()
    except (OSError, KeyError, zipfile.BadZipFile, ValueError) as e:
        raise SstError(
            f"not an offline ClearML session: {e}",
            path=path,
            fix="pass the .zip that `sst train` printed",
        ) from None
    events = [ev for line in lines if line.strip() for ev in json.loads(line)]
    return Session(task, events)


@dataclass
class Tracker:
    """A started ClearML task and what the kit reports to it."""

    task: Any
    offline: bool
    session_dir: Path | None = None
    closed: bool = field(default=False, init=False)

    @property
    def id(self) -> str:
        return str(self.task.id)

    def connect(self, values: Mapping[str, Any]) -> None:
        """The command's input (nested dicts allowed) as the ``config`` hyperparameter section:
        the task's one editable surface, whose edited values a clone takes under an agent."""
        self.task.connect(scrub(dict(values)), name="config")

    def record(self, name: str, values: Mapping[str, Any], description: str) -> None:
        """What the command records about itself (a run's fingerprint, a split's result, the
        image it ran in) as a configuration object of JSON text: shown in the web UI, never a
        hyperparameter, so it is not part of what a clone edits, and an agent never replaces
        it with the values of the task it was cloned from."""
        self.task.set_configuration_object(
            name=name,
            config_text=json.dumps(scrub(dict(values)), indent=1, sort_keys=True, default=str),
            config_type="json",
            description=description,
        )

    def report_single_value(self, name: str, value: float) -> None:
        self.task.get_logger().report_single_value(name, float(value))

    def report_image(self, title: str, series: str, path: Path, iteration: int = 0) -> None:
        """A PNG the run wrote (figures are files first; ClearML gets the same bytes)."""
        self.task.get_logger().report_image(
            title=title, series=series, iteration=iteration, local_path=str(path)
        )

    def report_histogram(
        self, title: str, series: str, values: list[float], labels: list[str], iteration: int = 0
    ) -> None:
        self.task.get_logger().report_histogram(
            title=title, series=series, values=values, iteration=iteration, xlabels=labels
        )

    def report_table(self, title: str, series: str, table: Any, iteration: int = 0) -> None:
        self.task.get_logger().report_table(
            title=title, series=series, iteration=iteration, table_plot=table
        )

    def report_confusion_matrix(
        self, title: str, series: str, matrix: list[list[int]], labels: list[str], iteration: int
    ) -> None:
        self.task.get_logger().report_confusion_matrix(
            title=title,
            series=series,
            iteration=iteration,
            matrix=matrix,
            xaxis="predicted",
            yaxis="true",
            xlabels=labels,
            ylabels=labels,
        )

    def record_container(self) -> None:
        """Make a clone run in this run's image: ``set_base_docker`` for agents, and a
        ``container`` configuration object (offline sessions pin API 2.9, where set_base_docker
        keeps only a legacy ``docker_cmd`` string)."""
        image, arguments = container_image(), container_arguments()
        self.task.set_base_docker(docker_image=image, docker_arguments=arguments)
        self.record(
            "container",
            {"image": image, "arguments": arguments},
            "the image this task ran in: a clone runs in it (clearml-agent --docker)",
        )

    def record_script(self, args: list[str]) -> None:
        """What an agent runs to re-execute this task: ``python -m sst.cli <args>`` in a fresh
        clone of the kit's git remote at the recorded commit, with the uncommitted changes
        applied as a patch (the task's parameters then supply the config). A remote others
        cannot clone is said in one line when the task is shared: here on a server, offline
        by `sst upload`."""
        git = git_state()
        if not self.offline and (problem := remote_problem(git.remote)):
            print(f"sst: warning: {problem}", file=sys.stderr)
        # ClearML detects the script (of the file that called Task.init: this kit's) in a thread
        # after Task.init; set_repo waits for it to finish before replacing what it found
        self.task.set_repo(repo=git.remote or "", commit=git.commit or "")
        self.task.set_script(
            diff=git_patch(),
            working_dir=".",
            entry_point=" ".join(["-m", "sst.cli", *(shlex.quote(a) for a in args)]),
        )

    def set_tags(self, tags: list[str]) -> None:
        self.task.add_tags(tags)

    def create_split_dataset(
        self, project: str, name: str, folder: Path, files: list[Path], raw_files: list[Path]
    ) -> str | None:
        """Online only: the raw files as one ``clearml.Dataset`` and the split's ``files`` (in
        ``folder``, kept at their paths in it: ``plots/…``) as its child. Returns the split
        dataset id, or None offline (the manifest is the version then)."""
        if self.offline:
            return None
        from clearml import Dataset

        raw = Dataset.create(dataset_name=f"{name}-raw", dataset_project=project)
        for path in raw_files:
            raw.add_files(path=str(path))
        raw.upload()
        raw.finalize()
        child = Dataset.create(dataset_name=name, dataset_project=project, parent_datasets=[raw.id])
        for path in files:
            child.add_files(path=str(path), dataset_path=str(path.parent.relative_to(folder)))
        child.upload()
        child.finalize()
        return str(child.id)

    def close(self) -> Path | None:
        """Close the task; offline, return the session zip."""
        if self.closed:
            return None
        self.closed = True
        self.task.close()
        if self.offline and self.session_dir is not None:
            zipped = self.session_dir.with_suffix(".zip")
            return zipped if zipped.is_file() else self.session_dir
        return None

    def upload_run(self, folder: Path, names: Sequence[str]) -> str | None:
        """Online: ``names`` in ``folder`` as task artifacts, on the files server (or the
        ``sdk.development.default_output_uri`` of clearml.conf, e.g. ``s3://bucket/sst``), and
        the weights among them registered as the task's output model (tagged ``run``: see
        :mod:`sst.tracking.registry`); returns the model id. Offline sessions stay small:
        ``sst upload <zip> --run <folder>`` attaches them later."""
        if self.offline:
            return None
        for name in names:
            self.task.upload_artifact(name, artifact_object=str(folder / name), wait_on_upload=True)
        if WEIGHTS not in names:
            return None
        uri = self.task.artifacts[WEIGHTS].url
        run = Run.open(folder, need=(WEIGHTS,))
        return registry.register(self.task, run, uri, name=self.task.name)

    def register_ensemble(self, run: Run, names: Sequence[str]) -> str | None:
        """Online: an ensemble folder's ``names`` as artifacts and the ensemble as this task's
        model (see :func:`sst.tracking.registry.register_ensemble`); its id."""
        if self.offline:
            return None
        self.upload_run(run.path, names)
        uri = self.task.artifacts[FINGERPRINT].url
        return registry.register_ensemble(self.task, run, uri)

    def register_export(self, folder: Path, run: Run, manifest: dict[str, Any]) -> str | None:
        """Online: an `sst export` folder as this task's model (see
        :func:`sst.tracking.registry.register_export`); its id."""
        return None if self.offline else registry.register_export(self.task, run, folder, manifest)

    def describe(self, run: Path | None = None) -> str:
        """One line: the task's link, or offline the session and how to share it."""
        if self.offline and self.session_dir is not None:
            zipped = self.session_dir.with_suffix(".zip")
            share = f"sst upload {zipped}" + (f" --run {run}" if run is not None else "")
            return f"ClearML offline session {self.session_dir} (share it: {share})"
        return f"ClearML task {self.id}: {self.task.get_output_log_web_page()}"


def start_task(
    project: str,
    name: str,
    task_type: str,
    config: Mapping[str, Any] | None = None,
    *,
    tags: list[str] | None = None,
    monitor_resources: bool = False,
    quiet: bool = False,
) -> Tracker:
    """Start a ClearML task: online when a server is configured, offline otherwise (said in one
    line on stderr). ``config`` is connected as the ``config`` section, secrets redacted."""
    from clearml import Task
    from clearml.config import ConfigWrapper

    offline = not server_configured()
    if not offline:
        check_server()
    Task.set_offline(offline)  # either way: a process may have gone offline before
    if offline:
        # Offline there is nothing to upload in the background: report in-process so that
        # close() returns at once instead of waiting ~10 s for a reporter subprocess.
        ConfigWrapper.set_overrides({"sdk": {"development": {"report_use_subprocess": False}}})
    # Task.init would reseed every RNG to 1337; the kit seeds explicitly after starting a task.
    Task.set_random_seed(None)
    task: Any = Task.init(
        project_name=project,
        task_name=name,
        task_type=getattr(Task.TaskTypes, task_type),
        reuse_last_task_id=False,
        auto_connect_arg_parser=False,
        # no figures captured twice (the kit reports its PNGs), and no checkpoint registered as a
        # model by its path on this machine: the kit registers the run's weights (registry)
        auto_connect_frameworks={"matplotlib": False, "pytorch": False},
        auto_resource_monitoring=monitor_resources,
        # models the kit uploads (an export's package) go where artifacts go: the files server,
        # or sdk.development.default_output_uri; never registered as a path on this machine
        output_uri=True,
    )
    session = Path(task.get_offline_mode_folder()) if offline else None
    tracker = Tracker(task=task, offline=offline, session_dir=session)
    if tags:
        tracker.set_tags(tags)
    if config is not None:
        tracker.connect(config)
    if not quiet:
        print(tracker.describe(), file=sys.stderr)
    return tracker


@contextmanager
def tracked(
    project: str,
    name: str,
    task_type: str,
    config: Mapping[str, Any] | None = None,
    *,
    args: list[str],
    enabled: bool = True,
    tags: list[str] | None = None,
    monitor_resources: bool = False,
) -> Iterator[Tracker | None]:
    """A ClearML task for the block (None when tracking is disabled), closed when it ends.
    ``args`` is the `sst` command line that re-executes it (see :meth:`Tracker.record_script`)."""
    if not enabled:
        yield None
        return
    tracker = start_task(
        project,
        name,
        task_type,
        config,
        tags=tags,
        monitor_resources=monitor_resources,
        quiet=True,
    )
    try:
        tracker.record_script(args)
        yield tracker
    finally:
        tracker.close()
