"""The config schema: YAML forms, validation messages, the flat (ROS parameter) mapping."""

from __future__ import annotations

import math

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ros2_inst3d.config import (Config, ConfigError, from_dict, load_config, markdown_table,
                                ros_parameter_yaml, schema)
from ros2_inst3d.resources import data_file


def test_defaults_round_trip_through_flat_names():
    cfg = Config()
    flat = cfg.to_flat()
    assert flat["accumulate.window_s"] == 2.0
    assert Config.from_flat(flat) == cfg
    assert set(flat) == {leaf.name for leaf in schema()}


def test_shipped_node_yaml_matches_the_schema_defaults(tmp_path):
    # config/segment.yaml is generated from the schema; a drift means someone edited one side only.
    shipped = data_file("config", "segment.yaml")
    assert shipped.read_text() == ros_parameter_yaml()
    assert load_config(shipped) == Config()


def test_ros_parameter_file_and_nested_and_dotted_forms_agree(tmp_path):
    nested = {"accumulate": {"window_s": 5.0}, "model": {"name": "geometric"}}
    ros = {"/**": {"ros__parameters": nested}}
    dotted = {"accumulate.window_s": 5.0, "model.name": "geometric"}
    results = []
    for i, data in enumerate((nested, ros, dotted)):
        path = tmp_path / f"c{i}.yaml"
        path.write_text(yaml.safe_dump(data))
        results.append(load_config(path))
    assert results[0] == results[1] == results[2]
    assert results[0].accumulate.window_s == 5.0


@pytest.mark.parametrize("data, message", [
    ({"acumulate": {"window_s": 1.0}}, "unknown config section(s) 'acumulate'"),
    ({"accumulate": {"window": 1.0}}, "unknown parameter(s) accumulate.window"),
    ({"accumulate": {"window_s": "long"}}, "'accumulate.window_s' must be a finite number"),
    ({"accumulate": {"window_s": -1.0}}, "'accumulate.window_s' must be >= 0.0"),
    ({"accumulate": {"max_scans": 2.5}}, "'accumulate.max_scans' must be an integer"),
    ({"model": {"name": "maskrcnn"}}, "'model.name' must be one of geometric"),
    ({"segment": {"roi_min": [0, 0]}}, "'segment.roi_min' must be a list of 3 numbers"),
    ({"segment": {"roi_min": [1, 0, 0], "roi_max": [0, 1, 1]}}, "must be below"),
    ({"output": {"publish_cloud": "yes"}}, "'output.publish_cloud' must be true or false"),
    ({"segment": {"score_threshold": float("nan")}}, "must be a finite number"),
    ({"input": {"topics": []}}, "at least one PointCloud2 topic"),
])
def test_invalid_values_fail_with_one_clear_message(data, message):
    with pytest.raises(ConfigError) as err:
        from_dict(data)
    assert message in str(err.value)


def test_load_config_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model: {name: nope}\n")
    with pytest.raises(ConfigError, match=str(path)):
        load_config(path)
    path.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_overrides_are_validated():
    cfg = load_config(None, {"model.name": "softgroup", "segment.min_points": 10})
    assert cfg.model.name == "softgroup" and cfg.segment.min_points == 10
    with pytest.raises(ConfigError):
        load_config(None, {"segment.min_points": 0})


def test_every_parameter_is_documented():
    table = markdown_table()
    for leaf in schema():
        assert leaf.doc and len(leaf.doc) > 15, leaf.name
        assert f"`{leaf.name}`" in table


def test_class_filter_empty_string_means_all():
    assert Config().class_filter == ()
    assert from_dict({"segment": {"class_filter": ["chair", ""]}}).class_filter == ("chair",)


_leaf_values = {
    float: st.floats(min_value=0.0, max_value=1.0, allow_nan=False),
    int: st.integers(min_value=1, max_value=10),
}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzzed_configs_either_load_or_raise_config_error(data):
    # The loader must never fail with anything but ConfigError, whatever a YAML file holds.
    leaves = schema()
    doc: dict = {}
    for leaf in data.draw(st.lists(st.sampled_from(leaves), max_size=6)):
        sec, _, key = leaf.name.partition(".")
        value = data.draw(st.one_of(
            st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=True),
            st.text(max_size=5), st.lists(st.floats(-10, 10), max_size=4),
            _leaf_values.get(leaf.type, st.just(leaf.default))))
        doc.setdefault(sec, {})[key] = value
    try:
        cfg = from_dict(doc)
    except ConfigError:
        return
    for name, value in cfg.to_flat().items():
        if isinstance(value, float):
            assert math.isfinite(value), name
