"""An ONNX file is refused, by name and before a session runs, for what it hides or would allocate."""

from __future__ import annotations

import onnx
import pytest
from onnx import TensorProto, helper

from drgrade.errors import ModelFileError
from drgrade.serving.runner import OnnxGrader
from tests.integration.test_fail_safe import SANE, drgrade_metadata, fake_export


def with_function_hiding_a_loop(path):
    """A model whose allowed-looking ``Identity`` node calls a local function holding a huge Loop."""
    model = onnx.load(str(path))
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"])],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, [])],
    )
    function = helper.make_function(
        "evil",
        "Identity",
        ["x"],
        ["y"],
        [
            helper.make_node(
                "Constant", [], ["trip"], value=helper.make_tensor("t", TensorProto.INT64, [], [2**62])
            ),
            helper.make_node(
                "Constant", [], ["go"], value=helper.make_tensor("g", TensorProto.BOOL, [], [True])
            ),
            helper.make_node("Loop", ["trip", "go"], [], body=body),
            helper.make_node("Identity", ["x"], ["y"]),
        ],
        [helper.make_opsetid("", 17)],
    )
    model.functions.append(function)
    model.opset_import.append(helper.make_opsetid("evil", 1))
    model.graph.node.append(helper.make_node("Identity", ["mean"], ["hidden"], domain="evil"))
    onnx.save(model, str(path))
    return path


def test_control_flow_inside_a_model_local_function_is_refused(tmp_path):
    path = with_function_hiding_a_loop(fake_export(tmp_path / "f.onnx", SANE, drgrade_metadata()))
    with pytest.raises(ModelFileError, match="model-local functions") as refused:
        OnnxGrader(path)
    assert "domains drgrade does not write: ['evil']" in str(refused.value)


def test_a_loop_nested_in_a_subgraph_is_found(tmp_path):
    loop = helper.make_node("Loop", ["t", "c"], ["o"])
    branch = helper.make_graph(
        [loop], "then", [], [helper.make_tensor_value_info("o", TensorProto.FLOAT, [])]
    )
    # an allowed node carrying a graph attribute: only a recursive walk sees the Loop inside
    carrier = helper.make_node("Identity", ["mean"], ["carried"], then_branch=branch)
    path = fake_export(tmp_path / "n.onnx", SANE, drgrade_metadata(), extra_nodes=[carrier])
    with pytest.raises(ModelFileError, match="Loop"):
        OnnxGrader(path)


def test_a_tensor_of_32_gb_is_refused_before_a_session_exists(tmp_path):
    shape = helper.make_tensor("huge_shape", TensorProto.INT64, [1], [8_000_000_000])
    nodes = [
        helper.make_node("Constant", [], ["huge"], value=shape),
        helper.make_node("ConstantOfShape", ["huge"], ["filled"]),
    ]
    path = fake_export(tmp_path / "c.onnx", SANE, drgrade_metadata(), extra_nodes=nodes)
    with pytest.raises(ModelFileError, match=r"ConstantOfShape output 'filled' of shape \[8000000000\]"):
        OnnxGrader(path)


def test_deeply_nested_metadata_is_a_named_refusal(tmp_path):
    deep = "[" * 200_000 + "]" * 200_000
    for key in ("decision_rule", "mean"):
        path = fake_export(tmp_path / f"{key}.onnx", SANE, drgrade_metadata(**{key: deep}))
        with pytest.raises(ModelFileError, match="nested too deeply"):
            OnnxGrader(path)


def test_metadata_image_size_must_match_the_graph_input(tmp_path):
    path = fake_export(tmp_path / "s.onnx", SANE, drgrade_metadata(size=128), size=64)
    with pytest.raises(ModelFileError, match=r"image input is \['batch', 3, 64, 64\].*image_size 128"):
        OnnxGrader(path)
    OnnxGrader(fake_export(tmp_path / "ok.onnx", SANE, drgrade_metadata(size=64), size=64))


def test_an_overlong_metadata_entry_is_refused(tmp_path):
    path = fake_export(tmp_path / "l.onnx", SANE, drgrade_metadata(model_name="x" * (2 << 20)))
    with pytest.raises(ModelFileError, match="metadata model_name is over"):
        OnnxGrader(path)
