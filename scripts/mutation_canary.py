#!/usr/bin/env python3
"""Mutation canary: plant small deliberate bugs in safety-critical code, one at a time, in a
scratch copy of the tree, run only the tests meant to catch each, and fail if any survives.

A surviving mutation means those tests no longer bite: the code they guard could break
unnoticed.  Each mutation is (id, file, exact old text, new text, pytest node ids); the old
text must occur exactly once, so a canary whose target moved fails loudly instead of
silently testing nothing.

    python scripts/mutation_canary.py            # the CI subset (fast), within ~4 minutes
    python scripts/mutation_canary.py --all      # every mutation
    python scripts/mutation_canary.py --only gate-slack,unpack-dotdot
    python scripts/mutation_canary.py --list

Exit 0 when every mutation run was caught, 1 when one survived, 2 when a target moved.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import namedtuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
Mutation = namedtuple("Mutation", "id file old new tests fast")
Mutation.__new__.__defaults__ = (True,)  # fast: in the CI subset unless it says False

# Adding one: append Mutation(id, file, old, new, [test node ids]) under the issue that found it.
# Keep ``old`` short but unique in its file (a moved or duplicated target fails loudly, exit 2),
# point ``tests`` at the fewest tests that kill it, and see it caught: --only ID.

T = "tests/"
MUTATIONS = [
    # ---- the GPU frame path (issue 18) --------------------------------------------------------
    Mutation("slot-graphs-read-one-frame", "jetson_deploy/runtime/executors/pycuda_kernel.py",
             "srcs = [int(self.dev_frames[(slot * self.batch + i) % n]) for i in range(self.batch)]",
             "srcs = [int(self.dev_frames[i % n]) for i in range(self.batch)]",
             [T + "test_runtime_gpu_preprocess.py::test_pycuda_gpu_preprocess_path"], True),
    Mutation("capture-warmup-copies-out", "jetson_deploy/runtime/backends/tensorrt.py",
             "        self._enqueue_on(ctx, addr, buffers, s.cuda_stream)\n        s.synchronize()",
             "        self._enqueue_on(ctx, addr, buffers, s.cuda_stream)\n        run_step(epilogue)\n        s.synchronize()",
             [T + "test_runtime_backend_tensorrt.py::test_capture_graph_sequence_with_a_fake_torch"], True),
    Mutation("driver-capture-warmup-copies-out", "jetson_deploy/runtime/backends/tensorrt.py",
             "self._enqueue_on(ctx, addr, buffers, handle)  # the warm-up TensorRT requires, not captured",
             "self._enqueue_on(ctx, addr, buffers, handle)\n        run_step(epilogue)",
             [T + "test_runtime_trt_double.py::test_driver_capture_runs_the_callers_steps_inside_the_capture_only"], True),
    Mutation("driver-graph-launch-dropped", "jetson_deploy/runtime/cuda_graph.py",
             "        rc = fn(gexec, stream)\n        if rc:", "        rc = 0\n        if rc:",
             [T + "test_runtime_trt_double.py::test_tensorrt_graphs_through_the_driver_without_torch"], True),
    # ---- the ten the audit planted --------------------------------------------------------
    Mutation("gate-slack", "jetson_deploy/calibration/gate.py",
             'res["passed"] = bool(res["value"] >= min_agreement)', 'res["passed"] = bool(res["value"] >= min_agreement - 0.05)',
             [T + "test_calib_gate_boundary.py"], True),
    Mutation("convert-ignores-min-agreement", "jetson_deploy/convert/int8.py",
             "min_agreement=opts.min_agreement, auto_exclude=opts.auto_exclude,", "min_agreement=0.99, auto_exclude=opts.auto_exclude,",
             [T + "test_convert_int8.py::test_min_agreement_reaches_the_gate_through_convert_and_the_cli"], False),
    Mutation("unpack-dotdot-leading-only", "jetson_deploy/bundle/pack.py",
             'if ".." in name.split("/"):', 'if name.startswith(".."):',
             [T + "test_bundle_pack.py::test_hostile_archive_is_refused"], True),
    Mutation("rollback-skips-checksums", "jetson_deploy/deploy/scripts.py",
             'ok() { [ -d "$B/$1" ] && [ -f "$B/.$1.sha256" ] && run_sums "$B/$1" "$B/.$1.sha256" >/dev/null; }',
             'ok() { [ -d "$B/$1" ]; }',
             [T + "test_deploy_rollback_rootfs.py"], True),
    Mutation("nhwc-constants-reversed", "jetson_deploy/preprocess.py",
             "mul_b, off_b = mul[None, None, :], off[None, None, :]", "mul_b, off_b = mul[None, None, ::-1], off[None, None, ::-1]",
             [T + "test_core_oracle.py"], True),
    Mutation("int8-top1-unchecked", "jetson_deploy/calibration/gate.py",
             "agree += int(np.sum(np.argmax(ref[0].reshape(b, -1), axis=1) == np.argmax(out[0].reshape(b, -1), axis=1)))",
             "agree += b",
             [T + "test_calib_gate_boundary.py"], True),
    Mutation("live-drop-newest", "jetson_deploy/media/capture.py",
             "old = self._q.popleft()", "old = self._q.pop()",
             [T + "test_media_sources.py::test_capture_thread_live_drops_oldest_and_counts"], True),
    Mutation("script-values-double-quoted", "jetson_deploy/deploy/scripts.py",
             'shlex.quote(v if v is not None else "")', '\'"{}"\'.format(v if v is not None else "")',
             [T + "test_deploy_local.py::test_scripts_run_with_hostile_values_inject_nothing"], True),
    Mutation("fold-constants-reversed", "jetson_deploy/convert/fold.py",
             "inits.append(_const(mul_n, mul.reshape(cshape).astype(np.float32)))",
             "inits.append(_const(mul_n, mul[::-1].reshape(cshape).astype(np.float32)))",
             [T + "test_convert_fold.py::test_folded_normalisation_matches_the_oracle_per_channel"], False),
    Mutation("unpack-allows-symlinks", "jetson_deploy/bundle/pack.py",
             "if m.type in (tarfile.SYMTYPE,):", "if m.type in ():",
             [T + "test_bundle_pack.py::test_hostile_archive_is_refused"], True),
    # ---- ten more ---------------------------------------------------------------------------
    Mutation("artifact-sha256-unchecked", "jetson_deploy/bundle/reader.py",
             'if got != art["sha256"]:', "if False:",
             [T + "test_bundle_pack.py::test_tampered_member_inside_archive_fails_verify"], True),
    Mutation("signature-not-verified", "jetson_deploy/bundle/sign.py",
             "key.verify(sig, manifest_raw)", "pass",
             [T + "test_deploy_rootfs.py::test_key_requires_a_valid_signature"], True),
    Mutation("device-upload-sha-unchecked", "jetson_deploy/deploy/scripts.py",
             'if ! run_sums "$S" "$SUMS" > "$SIZES.bad"; then', "if false; then",
             [T + "test_deploy_rootfs.py::test_rootfs_corrupted_copy_is_not_activated"], True),
    Mutation("health-fail-no-switch-back", "jetson_deploy/deploy/scripts.py",
             'if [ -n "$prev" ]; then swap "$prev"; else rm -f "$A/$N"; fi', ":",
             [T + "test_deploy_local.py::test_failed_health_check_switches_back_to_the_previous_version"], True),
    Mutation("service-not-restarted-after-rollback", "jetson_deploy/deploy/scripts.py",
             '[ -n "$ONRB" ] && after_rollback', '[ -n "$ONRB" ] && :',
             [T + "test_service_deploy.py::test_local_crash_loop_rolls_back_and_restarts_previous"], True),
    Mutation("rollback-to-unchecked", "jetson_deploy/deploy/scripts.py",
             'ok "$TO" || die', 'true || die',
             [T + "test_deploy_rollback_rootfs.py::test_rollback_to_a_damaged_version_is_refused"], True),
    Mutation("letterbox-offset", "jetson_deploy/preprocess.py",
             "return (r, (dst_w - new_w) // 2, (dst_h - new_h) // 2)", "return (r, (dst_w - new_w) // 2, 0)",
             [T + "test_core_oracle.py"], True),
    Mutation("scale-after-mean", "jetson_deploy/preprocess.py",
             "off = -mean / std", "off = -mean * np.float32(spec.scale) / std",
             [T + "test_core_oracle.py"], True),
    Mutation("torch-gray-weights-reversed", "jetson_deploy/runtime/torch_preprocess.py",
             "torch.tensor([0.114, 0.587, 0.299]", "torch.tensor([0.299, 0.587, 0.114]",
             [T + "test_runtime_oracle.py::test_torch_preprocess_matches_the_oracle"], True),
    Mutation("unpack-member-limit", "jetson_deploy/bundle/pack.py",
             "if m.size < 0 or m.size > max_member:", "if m.size < 0:",
             [T + "test_bundle_pack.py::test_oversized_member_and_total_are_refused"], True),
    Mutation("output-policy-replaces-anything", "jetson_deploy/_files.py",
             "    if st is not None and not _ours(path, kind, st):", "    if False:",
             [T + "test_core_files.py::test_prepare_output_replaces_only_what_we_made"], True),
    Mutation("sync-in-frame-loop", "jetson_deploy/runtime/pipeline.py",
             "            ex.submit(slot, frame)\n            st.submitted += 1",
             "            ex.submit(slot, frame)\n            ex.wait(slot)\n            st.submitted += 1",
             [T + "test_runtime_memory.py::test_pycuda_pinned_path_results_and_no_syncs_when_gpu_keeps_up"], True),
    Mutation("engine-cache-key-ignores-sm", "jetson_deploy/bundle/engine_cache.py",
             '"sm": int(sm),', '"sm": 0,',
             [T + "test_bundle_select.py"], True),
    Mutation("host-buffer-not-written", "jetson_deploy/runtime/executors/host.py",
             '= None\n\n    def prepare(self, frame: Any) -> None:\n        p = self._inputs.take()\n        preprocess(frame.image, self.spec, out=p.buffer.array[0])',
             '= None\n\n    def prepare(self, frame: Any) -> None:\n        p = self._inputs.take()\n        if p.pool is None:\n            preprocess(frame.image, self.spec, out=p.buffer.array[0])',
             [T + "test_runtime_oracle.py::test_host_executor_feeds_what_the_oracle_says"], True),
    # ---- issue 24: the audit's survivors, and two caught only by timing luck ---------------
    Mutation("bound-sink-fps-of-first-source", "jetson_deploy/runtime/multi_pipeline.py",
             "fps = self.sources[bound].fps if bound is not None else first.fps", "fps = first.fps",
             [T + "test_runtime_multi_source_sinks.py::test_a_bound_video_sink_takes_its_own_sources_frame_rate"]),
    Mutation("latest-slot-evicts-newest-stream", "jetson_deploy/media/live.py",
             "return self._items.popitem(last=False)[1]", "return self._items.popitem()[1]",
             [T + "test_media_live_slot.py::test_latest_slot_serves_the_stream_waiting_longest_first"]),
    Mutation("rtsp-full-encoder-still-fed", "jetson_deploy/media/rtsp_sink.py",
             "st.dropped += 1\n                continue", "st.dropped += 1",
             [T + "test_media_live_slot.py::test_rtsp_feeder_drops_a_frame_while_the_encoder_is_full"]),
    Mutation("unit-start-limit-off", "jetson_deploy/service.py",
             '"StartLimitIntervalSec=300",', '"StartLimitIntervalSec=0",',
             [T + "test_service_limits.py::test_unit_gives_up_after_ten_starts_in_five_minutes"]),
    Mutation("restart-gate-ignores-settle", "jetson_deploy/service.py",
             "health_timeout + settle + 30", "health_timeout",
             [T + "test_service_limits.py::test_settle_longer_than_the_health_timeout_keeps_a_healthy_deploy"]),
    Mutation("ansible-free-space-kib-as-bytes", "jetson_deploy/ansible_steps.py",
             "int(avail_kb) * 1024 < need + max(1 << 20, need // 100)", "int(avail_kb) < need",
             [T + "test_ansible_steps_plan.py::test_plan_checks_free_space_in_kib_against_the_bundle_in_bytes"]),
    Mutation("ansible-keep-hard-coded", "jetson_deploy/ansible_steps.py",
             "retention(history, installed, version, active, keep)", "retention(history, installed, version, active, 3)",
             [T + "test_ansible_steps_plan.py::test_plan_prunes_what_deploy_keeps"]),
    Mutation("tensorrt-versions-as-text", "jetson_deploy/bundle/opset.py",
             "_tuple(trt_version) >= _tuple(need[0])", "str(trt_version) >= need[0]",
             [T + "test_bundle_opset_versions.py"]),
    Mutation("parity-nan-unchecked", "jetson_deploy/convert/parity.py",
             "if not np.all(np.isfinite(g)):", "if False:",
             [T + "test_convert_parity_nonfinite.py"]),
    Mutation("dedupe-threshold-exclusive", "jetson_deploy/calibration/sources.py",
             "self.nearest(h) <= self.threshold", "self.nearest(h) < self.threshold",
             [T + "test_calib_dedupe.py"]),
    Mutation("calib-cache-header-by-minor", "jetson_deploy/trt/int8.py",
             "if number != want:", "if number // 100 != want // 100:",
             [T + "test_trt_int8_cache_version.py"]),
    Mutation("fleet-catches-only-our-errors", "jetson_deploy/deploy/single_host.py",
             "except Exception as exc:  # noqa: BLE001", "except JetsonDeployError as exc:  # noqa: BLE001",
             [T + "test_deploy_fleet_results.py::test_an_unexpected_error_on_one_host_keeps_the_others_results"]),
    Mutation("switch-only-redeploy-keeps-staging", "jetson_deploy/deploy/scripts.py",
             '  mv -f "$SUMS" "$B/.$V.sha256"\n  rmtree "$S"\n', '  mv -f "$SUMS" "$B/.$V.sha256"\n',
             [T + "test_deploy_fleet_results.py::test_switch_only_redeploy_leaves_no_staging_behind"]),
    Mutation("stale-temps-of-live-process-removed", "jetson_deploy/_files.py",
             " or pid_alive(int(pid)):", ":",
             [T + "test_core_files_stale.py::test_a_live_processs_partial_is_kept_and_removed_once_it_exits"]),
    Mutation("unexpected-error-exits-2", "jetson_deploy/cli.py",
             "_one_line(str(exc))), 1", "_one_line(str(exc))), 2",
             [T + "test_cli_exit_codes.py"]),
    Mutation("batch-two-rows-from-one-source", "jetson_deploy/runtime/batching.py",
             "if st.ended or st.index in taken:", "if st.ended:",
             [T + "test_runtime_batching.py::test_a_batch_never_takes_two_frames_of_one_source"]),
    Mutation("rolled-back-host-not-failed", "jetson_deploy/commands/deploy.py",
             'bad=("failed", "rolled-back")', 'bad=("failed",)',
             [T + "test_deploy_fleet_results.py::test_a_rolled_back_host_fails_the_deploy"]),
]


def _copy_tree(dst: str) -> None:
    """The working tree (tracked and untracked-unignored files) without venvs or caches."""
    skip = {".git", ".venv", ".venv36", ".venv38", "__pycache__", ".pytest_cache", "build", "dist", ".mypy_cache"}

    def ignore(_d, names):
        return [n for n in names if n in skip or n.endswith(".egg-info")]

    for name in os.listdir(ROOT):
        if name in skip or name.endswith(".egg-info"):
            continue
        src = os.path.join(ROOT, name)
        if os.path.isdir(src):
            shutil.copytree(src, os.path.join(dst, name), symlinks=True, ignore=ignore)
        else:
            shutil.copy2(src, os.path.join(dst, name))


def _check_targets(muts):
    bad = []
    for m in muts:
        with open(os.path.join(ROOT, m.file), encoding="utf-8") as f:
            n = f.read().count(m.old)
        if n != 1:
            bad.append("{}: expected the target text exactly once in {}, found it {} times (the code moved: update the canary)".format(m.id, m.file, n))
    return bad


def _run_tests(scratch: str, tests, timeout: int):
    env = dict(os.environ, PYTHONPATH=scratch, PYTHONDONTWRITEBYTECODE="1", JD_STRICT_SKIPS="0")
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-o", "addopts=", "-rfEs"] + list(tests)
    try:
        p = subprocess.run(cmd, cwd=scratch, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    except subprocess.TimeoutExpired:
        return 124, "timed out"
    return p.returncode, p.stdout.decode("utf-8", "replace")


def _first_failure(output: str) -> str:
    """The first failed test's node id from pytest's summary (a captured ``ERROR`` log line is not one)."""
    for prefix in ("FAILED ", "ERROR "):
        for line in output.splitlines():
            if line.startswith(prefix) and (line.split(" ", 2)[1].startswith("tests/") or "::" in line):
                return line.split(" ", 1)[1].split(" - ")[0]
    return "(rc without a FAILED line)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--all", action="store_true", help="run every mutation (default: the fast CI subset)")
    ap.add_argument("--only", default="", help="comma-separated mutation ids")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--timeout", type=int, default=300, help="seconds per mutation")
    args = ap.parse_args()
    muts = MUTATIONS
    if args.only:
        want = set(args.only.split(","))
        muts = [m for m in MUTATIONS if m.id in want]
        unknown = want - {m.id for m in muts}
        if unknown:
            print("unknown mutation ids: {}".format(", ".join(sorted(unknown))), file=sys.stderr)
            return 2
    elif not args.all:
        muts = [m for m in MUTATIONS if m.fast]
    if args.list:
        for m in MUTATIONS:
            print("{:32s} {:5s} {}  <- {}".format(m.id, "fast" if m.fast else "full", m.file, " ".join(m.tests)))
        return 0
    bad = _check_targets(muts)
    if bad:
        print("\n".join(bad), file=sys.stderr)
        return 2
    rows = []
    t_all = time.time()
    scratch = tempfile.mkdtemp(prefix="jd-canary-")
    try:
        _copy_tree(scratch)
        for m in muts:
            path = os.path.join(scratch, m.file)
            with open(path, encoding="utf-8") as f:
                original = f.read()
            t0 = time.time()
            try:
                with open(path, "w", encoding="utf-8") as f:
                    f.write(original.replace(m.old, m.new, 1))
                rc, output = _run_tests(scratch, m.tests, args.timeout)
            finally:
                with open(path, "w", encoding="utf-8") as f:
                    f.write(original)
            if rc == 1:
                verdict, by = "caught", _first_failure(output)
            elif rc == 0:
                verdict, by = "SURVIVED", "-"
                if " skipped" in output:
                    by = "(tests skipped: {})".format(output.strip().splitlines()[-1])
            else:
                verdict, by = "ERROR", "pytest rc {}: {}".format(rc, output.strip().splitlines()[-1] if output.strip() else "")
            rows.append((m.id, verdict, by, time.time() - t0))
            print("[canary] {:32s} {:8s} {:6.1f}s  {}".format(m.id, verdict, rows[-1][3], by), flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print("\n| mutation | result | caught by |\n|---|---|---|")
    for mid, verdict, by, _dt in rows:
        print("| {} | {} | {} |".format(mid, verdict, by))
    print("\n[canary] {} mutation(s), {:.0f}s".format(len(rows), time.time() - t_all))
    failed = [r for r in rows if r[1] != "caught"]
    if failed:
        print("[canary] FAILED: {} mutation(s) not caught: {}".format(len(failed), ", ".join(r[0] for r in failed)), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
