"""Several sources, sinks bound to one of them: a bound video sink is written at its own source's
frame rate (``--sink 1=out.avi`` of a 25 fps camera beside a 10 fps one is a 25 fps file)."""
import pytest

from support import optional_module

pytestmark = pytest.mark.needs("onnxruntime", "cv2")
cv2 = optional_module("cv2")

from support.runtime import make_batch_bundle, write_sequence_video  # noqa: E402

from jetson_deploy.runtime.options import OutputOptions, RunOptions  # noqa: E402
from jetson_deploy.runtime.session import run_pipeline  # noqa: E402

A = ["red", "green", "blue", "red"]
B = ["blue", "blue", "red", "green", "red", "blue"]


def _fps_and_frames(path):
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), path
    fps = cap.get(cv2.CAP_PROP_FPS)
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return fps, n


def test_a_bound_video_sink_takes_its_own_sources_frame_rate(tmp_path):
    bundle = make_batch_bundle(tmp_path / "dyn")
    write_sequence_video(tmp_path / "ten.avi", A, fps=10.0)
    write_sequence_video(tmp_path / "quarter.avi", B, fps=25.0)
    out0, out1, every = tmp_path / "out0.avi", tmp_path / "out1.avi", tmp_path / "every.avi"
    s = run_pipeline(bundle, [str(tmp_path / "ten.avi"), str(tmp_path / "quarter.avi")],
                     ["0=" + str(out0), "1=" + str(out1), str(every)],
                     options=RunOptions(backend="onnxruntime"), outputs=OutputOptions(metrics_interval=0))
    assert s.frames == len(A) + len(B)
    assert _fps_and_frames(out1) == (pytest.approx(25.0), len(B))  # source 1's rate, source 1's frames
    assert _fps_and_frames(out0) == (pytest.approx(10.0), len(A))
    # a sink bound to no source gets every frame, written at the first source's rate
    assert _fps_and_frames(every) == (pytest.approx(10.0), len(A) + len(B))
