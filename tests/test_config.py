"""The YAML is validated once, with the key and the fix in one line."""

from pathlib import Path

import pytest

from pipeline import ConfigError, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def test_defaults_and_paths_relative_to_the_yaml(tmp_path):
    config = load_config(write(tmp_path, "input: {paths: a/*.tif}\noutput: {path: out/l.tif}\n"))
    assert config.input.paths == (str(tmp_path / "a" / "*.tif"),)
    assert config.output_path == tmp_path / "out" / "l.tif"
    assert (config.model.k, config.model.init, config.sample.size, config.dask.chunk) == (7, "k-means++", 1_000_000, 2048)


def test_set_overrides_types_and_resolves_paths_against_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path / "" , "input: {paths: [x.tif]}\n")
    config = load_config(path, ["model.k=5", "sample.size=all", "output.path=elsewhere/k5.tif", "input.bands=[1, 3]", "model.init=k-means||"])
    assert config.model.k == 5 and config.sample.size == "all" and config.input.bands == (1, 3) and config.model.init == "k-means||"
    assert config.output_path == tmp_path / "elsewhere" / "k5.tif"


@pytest.mark.parametrize(
    ("text", "overrides", "message"),
    [
        ("input: {paths: [a.tif]}\nmodel: {kk: 3}\n", [], r"unknown key 'model.kk'; valid keys under 'model' are: k, init, n_init, max_iter, tol"),
        ("input: {paths: [a.tif]}\nmodle: {k: 3}\n", [], r"unknown key 'modle'; valid keys at the top level"),
        ("input: {paths: [a.tif]}\nmodel: {k: 300}\n", [], r"'model.k': .*less than or equal to 254 .*got 300.*from 2 to 254"),
        ("input: {paths: [a.tif]}\nmodel: {k: '7'}\n", [], r"'model.k': .*integer.*got '7'"),
        ("input: {paths: [a.tif]}\nmodel: {init: random}\n", [], r"'model.init': .*got 'random'.*; use \"k-means\+\+\" or \"k-means\|\|\""),
        ("input: {paths: [a.tif]}\noutput: {overwrite: 'yes'}\n", [], r"'output.overwrite'.*true or false"),
        ("input: {paths: [a.tif]}\ndask: {chunk: 1000}\n", [], r"'dask.chunk': must be a multiple of 512"),
        ("input: {paths: [a.tif]}\nsample: {size: 3}\n", [], r"sample.size \(3\) is smaller than model.k \(7\)"),
        ("input: {paths: [a.tif]}\nsample: {size: some}\n", [], r"'sample.size'"),
        ("input: {paths: [a.tif], bands: [1, 1]}\n", [], r"'input.bands': a band is listed twice"),
        ("model: {k: 3}\n", [], r"'input' is required"),
        ("input: [a.tif\n", [], r"not valid YAML at line \d+; fix the syntax"),
        ("input: {paths: [a.tif]}\n", ["model.k"], r"--set 'model.k': write KEY=VALUE"),
        ("input: {paths: [a.tif]}\n", ["model.q=3"], r"unknown key 'model.q'"),
        ("input: {paths: [a.tif], crs: 'EPSG:999999'}\n", [], r"'input.crs': not a CRS that PROJ knows .*\"EPSG:26914\""),
        ("input: {paths: [a.tif], resolution: 5}\n", [], r"input.resolution needs input.crs"),
        ("input: {paths: [a.tif]}\ndask: {scheduler: cluster}\n", [], r"'dask.scheduler': not a scheduler name .*tcp://10.0.0.5:8786"),
        ("input: {paths: [a.tif]}\ndask: {scheduler: 'tcp://h:8786', workers: 4}\n", [], r"dask.workers: a running cluster has the workers it was started with"),
        ("input: {paths: [a.tif]}\ndask: {threads_per_worker: 2}\n", [], r"dask.threads_per_worker applies only to dask.scheduler: local-cluster \(got threads\)"),
        ("input: {paths: [a.tif]}\ndask: {scheduler: local-cluster, memory_limit: lots}\n", [], r"'dask.memory_limit': not a size .*\"4GB\""),
    ],
)
def test_bad_config_is_one_line_naming_the_key(tmp_path, text, overrides, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_config(write(tmp_path, text), overrides)
    assert "\n" not in str(info.value)
    assert str(tmp_path / "run.yaml") in str(info.value) or "--set" in str(info.value)


def test_dask_schedulers(tmp_path):
    text = "input: {paths: [a.tif]}\ndask: {scheduler: local-cluster, workers: 2, threads_per_worker: 1, memory_limit: 2GB}\n"
    dask = load_config(write(tmp_path, text)).dask
    assert (dask.scheduler, dask.workers, dask.threads_per_worker, dask.memory_limit) == ("local-cluster", 2, 1, "2GB")
    assert load_config(write(tmp_path, "input: {paths: [a.tif]}\n")).dask.scheduler == "threads"
    assert load_config(write(tmp_path, "input: {paths: [a.tif]}\n"), ["dask.scheduler=tcp://10.0.0.5:8786"]).dask.scheduler == "tcp://10.0.0.5:8786"


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_config_is_frozen(tmp_path):
    config = load_config(write(tmp_path, "input: {paths: [a.tif]}\n"))
    with pytest.raises(Exception):
        config.model.k = 3
