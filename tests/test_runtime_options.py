"""Option objects of a run: one typed field per setting, checked when the object is made."""
import pytest

from jetson_deploy.errors import BadInput
from jetson_deploy.runtime.options import RunOptions
from jetson_deploy.vocab import GPU_PREPROCESS, MEMORY


def test_each_setting_has_one_spelling():
    """The former dict bags are typed fields; their old spellings are refused with the choices."""
    o = RunOptions(threads=2, providers=["CPUExecutionProvider"], cache_dir="/tmp/c", gpu_preprocess="host",
                   mapped_in=True, mapped_out=False)
    assert (o.threads, o.cache_dir, o.gpu_preprocess, o.mapped_in, o.mapped_out) == (2, "/tmp/c", "host", True, False)
    for old in ("on", "off", True, False, "True"):
        with pytest.raises(BadInput, match="gpu_preprocess .*choose one of auto, kernel, torch-ops, host"):
            RunOptions(gpu_preprocess=old)
    assert GPU_PREPROCESS == ("auto", "kernel", "torch-ops", "host")
    with pytest.raises(TypeError):
        RunOptions(engine_options={"threads": 1})  # the dict bags are gone


@pytest.mark.parametrize("field,value,msg", [
    ("backend", "onnx", "backend 'onnx': choose one of auto, onnxruntime, torch, tensorrt"),
    ("memory", "pinned", "memory 'pinned': choose one of " + ", ".join(MEMORY)),
    ("sync_debug", "loud", "sync_debug 'loud': choose one of warn, error"),
    ("depth", 0, "depth 0: give at least 1"),
    ("threads", -1, "threads -1: give 0"),
])
def test_bad_values_are_one_line(field, value, msg):
    with pytest.raises(BadInput) as e:
        RunOptions(**{field: value})
    assert str(e.value).startswith(msg) and "\n" not in str(e.value)
