"""What one dvc.yaml declares for the report: params files, metrics files, plots, cached outputs.

This mirrors how DVC 3 collects them (`repo.params.show`, `repo.metrics.show`, `repo.plots.show`)
for a pipeline in one dvc.yaml at the project's root without templating; anything else raises
`Unsupported` and is left to DVC's API.
"""

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runner.report.dvcformats import Unsupported

DEFAULT_PARAMS = "params.yaml"
TEMPLATED = ("vars", "foreach", "matrix", "do", "wdir")
PLOT_PROPS = ("template", "x", "y", "x_label", "y_label", "title", "header")  # dvc.schema.PLOT_PROPS
PlotProps = dict[str, Any]


@dataclass
class Pipeline:
    """The files one revision's dvc.yaml declares, in DVC's order."""

    params: dict[str, list[str]] = field(default_factory=dict)  # {file: keys; [] for all of it}
    metrics: list[str] = field(default_factory=list)
    plots: dict[str, dict[str, PlotProps]] = field(default_factory=dict)  # DVC's definitions groups
    plot_outputs: dict[str, PlotProps] = field(default_factory=dict)  # {path: props} of stage plots
    cached: set[str] = field(default_factory=set)  # outputs DVC keeps in its cache, not in git

    def data_sources(self) -> dict[str, PlotProps]:
        """Return {file: props} of the files the plots read, as `Plots._collect_data_sources` does."""
        sources: dict[str, PlotProps] = {}
        for group in self.plots.values():
            for plot_id, props in group["data"].items():
                for path in _inferred_sources(plot_id, props):
                    sources[path] = dict(self.plot_outputs.get(path, {}))
        return sources


def _inferred_sources(plot_id: str, props: PlotProps) -> list[str]:
    """Return the data files of one plot, as `dvc.repo.plots.infer_data_sources` does."""
    y, x = props.get("y"), props.get("x")
    sources = list(y) if isinstance(y, dict) else [plot_id]
    if isinstance(x, dict) and x:
        sources.append(next(iter(x)))
    return list(dict.fromkeys(sources))


def _path(value: Any) -> str:
    """Return a declared path normalized as DVC does, refusing what leaves the project."""
    if not isinstance(value, str) or not value:
        raise Unsupported(f"a declared path that is not a string: {value!r}")
    path = posixpath.normpath(value)
    if path.startswith("../") or path == ".." or posixpath.isabs(path):
        raise Unsupported(f"a path outside the project: {value}")
    return path


def _check_plain(document: Any, inside_cmd: bool = False) -> None:
    """Refuse interpolation (`${…}`) anywhere but in a stage's command."""
    if isinstance(document, str) and "${" in document and not inside_cmd:
        raise Unsupported("an interpolated value in dvc.yaml")
    if isinstance(document, Mapping):
        for key, value in document.items():
            _check_plain(key)
            _check_plain(value, inside_cmd or key == "cmd")
    elif isinstance(document, list):
        for value in document:
            _check_plain(value, inside_cmd)


def _entries(values: Any) -> list[tuple[str, Any]]:
    """Return (path, props) of an outs/metrics/plots list: each a string or a one-key mapping."""
    if values is None:
        return []
    if not isinstance(values, list):
        raise Unsupported("an outputs list that is not a list")
    entries: list[tuple[str, Any]] = []
    for value in values:
        if isinstance(value, str):
            entries.append((_path(value), {}))
        elif isinstance(value, Mapping) and len(value) == 1:
            path, props = next(iter(value.items()))
            entries.append((_path(path), props if props is not None else {}))
        else:
            raise Unsupported(f"an output entry DVC's schema would refuse: {value!r}")
    return entries


def _stage_params(values: Any) -> list[dict[str, list[str]]]:
    """Return a stage's params as `dvc.dependency.loads_params` merges them."""
    keys: list[Any] = []
    for value in values or []:
        if isinstance(value, str):
            keys.append(value)
        elif isinstance(value, Mapping):
            keys.append({_path(path): ([] if names is None else names) for path, names in value.items()})
        else:
            raise Unsupported(f"a params entry DVC's schema would refuse: {value!r}")
    return [{path: list(names)} for path, names in merge_params(keys).items()]


def merge_params(entries: list[Any]) -> dict[str, list[str]]:
    """Merge params entries (a key of params.yaml, or {file: keys}) as `dvc.dependency._merge_params`."""
    wholly = {
        path for entry in entries if isinstance(entry, Mapping) for path, names in entry.items() if not names
    }
    merged: dict[str, list[str]] = {}
    for entry in entries:
        if isinstance(entry, str):
            if DEFAULT_PARAMS not in wholly:
                merged.setdefault(DEFAULT_PARAMS, []).append(entry)
            continue
        for path, names in entry.items():
            if path in wholly:
                merged[path] = []
            elif isinstance(names, list) and all(isinstance(name, str) for name in names):
                merged.setdefault(path, []).extend(names)
            else:
                raise Unsupported(f"params of {path} that are not a list of keys")
    return merged


def _add_stage(pipeline: Pipeline, stage: Any, params: list[Any]) -> None:
    if not isinstance(stage, Mapping) or any(key in stage for key in TEMPLATED):
        raise Unsupported("a templated stage (foreach, matrix, vars or wdir)")
    params.extend(_stage_params(stage.get("params")))
    for kind in ("outs", "metrics", "plots"):
        for path, props in _entries(stage.get(kind)):
            if not isinstance(props, Mapping):
                raise Unsupported(f"properties of {path} that are not a mapping")
            if props.get("cache", True) is not False:
                pipeline.cached.add(path)
            if kind == "metrics":
                pipeline.metrics.append(path)
            elif kind == "plots":
                pipeline.plot_outputs[path] = {k: v for k, v in props.items() if k in PLOT_PROPS}


def _top_level_plots(values: Any) -> dict[str, PlotProps]:
    """Return {plot id: props} of dvc.yaml's `plots:`, resolved as `_resolve_definitions` does."""
    resolved: dict[str, PlotProps] = {}
    for value in values or []:
        props: Any
        if isinstance(value, str):
            plot_id, props = value, {}
        elif isinstance(value, Mapping) and value:
            plot_id, props = next(iter(value.items()))
            props = props or {}
        else:
            raise Unsupported(f"a plot DVC's schema would refuse: {value!r}")
        if not isinstance(props, Mapping):
            raise Unsupported(f"properties of plot {plot_id} that are not a mapping")
        if isinstance(props.get("y"), Mapping):
            resolved[str(plot_id)] = _adjusted(dict(props))
        else:
            resolved[_path(plot_id)] = dict(props)
    return resolved


def _adjusted(props: PlotProps) -> PlotProps:
    """Normalize the files named in x and y, as `dvc.repo.plots._adjust_sources` does."""
    for axis in ("x", "y"):
        if axis == "x" and not isinstance(props.get("x"), Mapping):
            continue
        props[axis] = {_path(path): columns for path, columns in props.pop(axis).items()}
    return props


def parse_pipeline(dvc_yaml: Any, params_file_exists: bool) -> Pipeline:
    """Return what a parsed dvc.yaml declares; `params_file_exists`: whether params.yaml is there."""
    if not isinstance(dvc_yaml, Mapping) or "vars" in dvc_yaml:
        raise Unsupported("a dvc.yaml with vars, or not a mapping")
    _check_plain(dvc_yaml)
    pipeline = Pipeline()
    params: list[Any] = []
    stages = dvc_yaml.get("stages") or {}
    if not isinstance(stages, Mapping):
        raise Unsupported("stages that are not a mapping")
    for stage in stages.values():
        _add_stage(pipeline, stage, params)
    params += [{_path(path): []} for path in _listed(dvc_yaml.get("params"))]
    if params_file_exists:
        params.append({DEFAULT_PARAMS: []})
    pipeline.params = merge_params(params)
    pipeline.metrics = list(dict.fromkeys([*pipeline.metrics, *map(_path, _listed(dvc_yaml.get("metrics")))]))
    top = _top_level_plots(dvc_yaml.get("plots"))
    if top:
        pipeline.plots["dvc.yaml"] = {"data": top}
    if pipeline.plot_outputs:
        pipeline.plots[""] = {"data": {path: dict(props) for path, props in pipeline.plot_outputs.items()}}
    return pipeline


def _listed(values: Any) -> list[Any]:
    if values is None:
        return []
    if not isinstance(values, list):
        raise Unsupported("a top-level params or metrics entry that is not a list")
    return values


def locked_outputs(dvc_lock: Any) -> dict[str, dict[str, Any]]:
    """Return {path: entry} of the outputs dvc.lock records (md5, size, hash kind)."""
    outputs: dict[str, dict[str, Any]] = {}
    stages = dvc_lock.get("stages") if isinstance(dvc_lock, Mapping) else None
    for stage in stages.values() if isinstance(stages, Mapping) else []:
        entries = stage.get("outs") if isinstance(stage, Mapping) else None
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, Mapping) and isinstance(entry.get("path"), str):
                outputs[_path(entry["path"])] = dict(entry)
    return outputs
