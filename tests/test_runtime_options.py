"""Option objects of a run, and the flat keywords that still set them."""
import pytest

from jetson_deploy.runtime.options import OutputOptions, RunOptions, SourceOptions, split_options


def test_flat_keywords_land_in_their_group_on_copies():
    base = RunOptions(backend="torch", depth=4)
    run, src, out = split_options(base, None, None, max_frames=7, queue_size=2, jsonl="p.jsonl",
                                  source_options={"seed": "3"}, engine_options=None)
    assert (run.backend, run.depth, run.max_frames, run.engine_options) == ("torch", 4, 7, {})
    assert (src.queue_size, src.options) == (2, {"seed": "3"}) and out.jsonl == "p.jsonl"
    assert base.max_frames is None  # the caller's object is not changed


def test_defaults_and_objects_pass_through():
    src, out = SourceOptions(stall_timeout=1.0), OutputOptions(keep_results=True)
    run, s2, o2 = split_options(None, src, out)
    assert run == RunOptions() and s2 is src and o2 is out


def test_unknown_and_removed_keywords_are_errors():
    with pytest.raises(TypeError, match="backnd"):
        split_options(backnd="onnxruntime")
    with pytest.raises(TypeError, match="logger"):
        split_options(printer=print)


@pytest.mark.needs("onnxruntime")
def test_several_sources_need_a_batch_that_holds_them(tmp_path):
    import onnxruntime  # noqa: F401
    from support.runtime import make_bundle

    from jetson_deploy.errors import BadInput
    from jetson_deploy.runtime.pipeline import run_pipeline

    b = make_bundle(tmp_path / "b")
    with pytest.raises(BadInput, match="2 sources.*--dynamic-batch"):
        run_pipeline(b, ["synthetic://32x24", "synthetic://32x24"], "null://", backend="onnxruntime")
    s = run_pipeline(b, ["synthetic://32x24"], "null://", options=RunOptions(backend="onnxruntime", max_frames=3))
    assert s.frames == 3
