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
             "    if m.type in kinds:\n        raise _refusal(source, m.name, kinds[m.type])\n    if m.type not in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE) or m.issparse():",
             "    if m.issparse():",
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
             "torch.tensor([float(v) for v in GRAY_WEIGHTS]", "torch.tensor([float(v) for v in GRAY_WEIGHTS[::-1]]",
             [T + "test_runtime_oracle.py::test_torch_preprocess_matches_the_oracle"], True),
    Mutation("unpack-member-limit", "jetson_deploy/bundle/pack.py",
             "if m.size < 0 or m.size > caps.member:", "if m.size < 0:",
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
    Mutation("rolled-back-host-not-failed", "jetson_deploy/deploy/fleet.py",
             'DEPLOY_NOT_OK = ("failed", "rolled-back")', 'DEPLOY_NOT_OK = ("failed",)',
             [T + "test_deploy_fleet_results.py::test_a_rolled_back_host_fails_the_deploy",
              T + "test_journey_seams.py::test_rolled_back_hosts_are_counted_apart_from_ok"]),
    # ---- issue 26: DeepStream and Triton exports ------------------------------------------------
    Mutation('nvinfer-offsets-times-scale', 'jetson_deploy/bundle/export/nvinfer_norm.py',
             '"offsets": [float(m) / float(spec.scale) for m in spec.mean]',
             '"offsets": [float(m) * float(spec.scale) for m in spec.mean]',
             [T + 'test_bundle_export.py::test_net_scale_factor_and_offsets_reproduce_preprocess'], True),
    Mutation('nvinfer-color-format-swapped', 'jetson_deploy/bundle/export/nvinfer_norm.py',
             'COLOR_FORMAT = {"rgb": 0, "bgr": 1, "gray": 2}',
             'COLOR_FORMAT = {"rgb": 1, "bgr": 0, "gray": 2}',
             [T + 'test_bundle_export.py::test_net_scale_factor_and_offsets_reproduce_preprocess'], True),
    Mutation('nvinfer-per-channel-std-let-through', 'jetson_deploy/bundle/export/nvinfer_norm.py',
             '    return hi - lo <= SAME_STD_RTOL * max(abs(hi), abs(lo))',
             '    return True',
             [T + 'test_bundle_export.py::test_per_channel_std_is_refused_in_one_line'], True),
    Mutation('triton-one-cc-only', 'jetson_deploy/bundle/export/triton.py',
             'for sm, f in sorted(cc_files.items())]',
             'for sm, f in sorted(cc_files.items())[:1]]',
             [T + 'test_bundle_export.py::test_triton_repository_layout'], True),
    Mutation('triton-dims-keep-batch', 'jetson_deploy/bundle/export/triton.py',
             '        dims = dims[1:]',
             '        dims = dims',
             [T + 'test_export_vendors.py::test_triton_config_is_a_modelconfig_matching_the_onnx_model'], True),
    Mutation('nvinfer-network-mode-swapped', 'jetson_deploy/bundle/export/deepstream.py',
             'NETWORK_MODE = {"fp32": 0, "int8": 1, "fp16": 2}',
             'NETWORK_MODE = {"fp32": 0, "int8": 2, "fp16": 1}',
             [T + 'test_bundle_export.py::test_deepstream_configs_per_task_and_precision'], True),
    Mutation('nvinfer-letterbox-not-symmetric', 'jetson_deploy/bundle/export/deepstream.py',
             'keys += [("maintain-aspect-ratio", True), ("symmetric-padding", True)]',
             'keys += [("maintain-aspect-ratio", True)]',
             [T + 'test_bundle_export.py::test_deepstream_configs_per_task_and_precision'], True),
    Mutation('nvinfer-infer-dims-wh', 'jetson_deploy/bundle/export/deepstream.py',
             'infer-dims", [spec.channels, spec.height, spec.width])',
             'infer-dims", [spec.channels, spec.width, spec.height])',
             [T + 'test_bundle_export.py::test_deepstream_configs_per_task_and_precision'], True),
    Mutation('export-into-the-bundle', 'jetson_deploy/bundle/export/output.py',
             '    if _inside(real, root) or _inside(root, real):',
             '    if False:',
             [T + 'test_bundle_export.py::test_output_policy'], True),
    # ---- issue 23: the run session, options, deploy options -------------------------------------
    Mutation('batch-former-restarts-at-next', 'jetson_deploy/runtime/batching.py',
             'self._next = (rows[-1][0].index + 1) if rows else self._next + 1',
             'self._next = self._next + 1',
             [T + 'test_runtime_session.py::test_batch_former_serves_every_source_before_any_twice'], True),
    Mutation('session-reverifies-a-verified-bundle', 'jetson_deploy/runtime/session.py',
             'if self.options.verify and not b.verified:',
             'if self.options.verify:',
             [T + 'test_runtime_session.py::test_a_verified_bundle_is_hashed_once_for_a_signed_run'], False),
    Mutation('pycuda-reduction-not-launched', 'jetson_deploy/runtime/executors/pycuda.py',
             '                op.launch(src, dst, stream)',
             '                pass',
             [T + 'test_runtime_trt_double.py::test_classify_reduction_on_the_gpu_matches_the_host'], True),
    Mutation('bench-spread-never-warned', 'jetson_deploy/bench.py',
             'if res["spread"]["pipeline_fps"] > SPREAD_WARN and len(runs.pipeline) > 1:',
             'if False:',
             [T + 'test_runtime_cli.py::test_bench_repeats_reports_the_median_and_warns_on_spread'], True),
    Mutation('deploy-default-keep-4', 'jetson_deploy/deploy/options.py',
             'keep: int = DEFAULT_KEEP, health_cmd',
             'keep: int = 4, health_cmd',
             [T + 'test_deploy_rootfs.py::test_library_default_options_keep_three_versions'], True),
    Mutation('rootfs-with-hosts-allowed', 'jetson_deploy/deploy/fleet.py',
             '    if rootfs is not None and hosts:',
             '    if rootfs is not None and hosts and False:',
             [T + 'test_deploy_rootfs.py::test_library_refuses_hosts_or_health_cmd_with_a_rootfs'], True),
    Mutation('rootfs-health-cmd-allowed', 'jetson_deploy/deploy/options.py',
             '        if self.rootfs is not None and self.health_cmd:',
             '        if False:',
             [T + 'test_deploy_rootfs.py::test_rootfs_rejects_bad_usage'], True),
    Mutation('quiet-keeps-info', 'jetson_deploy/_messages.py',
             '        lg.setLevel(logging.WARNING)',
             '        lg.setLevel(logging.INFO)',
             [T + 'test_deploy_rootfs.py::test_progress_lines_are_log_records_and_quiet_keeps_warnings'], True),
    Mutation('calibrate-ignores-tif', 'jetson_deploy/calibration/sources.py',
             '        elif ext in IMAGE_EXTS or explicit:',
             '        elif ext in IMAGE_EXTS[:5] or explicit:',
             [T + 'test_calib_dataset.py::test_calibrate_reads_every_image_kind_run_reads'], True),
    Mutation('ort-threads-never-one', 'jetson_deploy/runtime/backends/onnxruntime.py',
             '        if call_ms < SHORT_CALL_MS:',
             '        if False:',
             [T + 'test_runtime_cli.py::test_onnxruntime_threads_follow_the_call_on_a_small_machine'], True),
    # ---- issue 30: the torch path compiled like an engine ----------------------------------------
    Mutation('compile-failure-not-eager', 'jetson_deploy/runtime/torch_compile.py',
             '                torch._dynamo.reset()\n                return',
             '                raise',
             [T + 'test_runtime_torch_compile.py::test_a_model_that_does_not_compile_runs_eager_with_one_line'], True),
    Mutation('unreadable-artifacts-kept', 'jetson_deploy/runtime/torch_compile.py',
             '            if self.torch.compiler.load_cache_artifacts(path.read_bytes()) is None:',
             '            if False:',
             [T + 'test_runtime_torch_compile.py::test_artifacts_that_do_not_load_are_removed_and_rebuilt'], True),
    Mutation('compile-key-ignores-torch', 'jetson_deploy/runtime/torch_compile.py',
             '    fields = dict(identity, kind="torch-inductor", bundle=bundle_sha256, precision=precision)',
             '    fields = dict(identity, kind="torch-inductor", bundle=bundle_sha256, precision=precision, torch=None)',
             [T + 'test_runtime_torch_compile.py::test_the_key_changes_with_everything_a_compiled_model_depends_on'], True),
    Mutation('compile-warms-both-tensor-kinds', 'jetson_deploy/runtime/torch_compile.py',
             "        torch = self.torch\n        with torch.inference_mode():",
             "        torch = self.torch\n        fn(example.clone())\n        with torch.inference_mode():",
             [T + 'test_runtime_torch_compile.py::test_the_load_compiles_one_graph_the_callers_use'], True),
    Mutation('inductor-cache-left-in-tmp', 'jetson_deploy/runtime/backends/torch.py',
             "            keep_inductor_cache(EngineCache(self.cache_dir))",
             "            EngineCache(self.cache_dir)",
             [T + 'test_runtime_torch_compile.py::test_run_compiles_once_then_loads_from_the_engine_cache'], False),
    Mutation('inductor-cache-overrides-the-user', 'jetson_deploy/runtime/torch_compile.py',
             '    if os.environ.get("TORCHINDUCTOR_CACHE_DIR"):\n        return None',
             '    if False:\n        return None',
             [T + 'test_runtime_torch_compile.py::test_inductor_cache_is_kept_in_the_engine_cache_unless_the_user_chose'], True),
    Mutation('cache-clear-ignores-marker', 'jetson_deploy/bundle/engine_cache.py',
             'if d.is_dir() and not d.is_symlink() and (d / _MARKER).is_file():',
             'if d.is_dir() and not d.is_symlink():',
             [T + 'test_runtime_torch_compile.py::test_cache_clear_removes_only_the_inductor_directory_it_made'], True),
    # ---- issue 24, second round: the two real bugs mutmut's survivors led to -------------------
    Mutation('nms-offset-by-largest-coordinate', 'jetson_deploy/runtime/postprocess.py',
             "(float(boxes.max() - boxes.min()) + 1.0)", "(float(np.abs(boxes).max()) + 1.0)",
             [T + 'test_runtime_mutants.py::test_nms_never_suppresses_across_classes_even_with_negative_coordinates'], True),
    Mutation('packed-index-closes-the-member', 'jetson_deploy/bundle/pack.py',
             'member = tar.extractfile(m)  # not ``f``: that is the archive, closed below\n'
             '                small[name] = member.read() if member is not None else b""',
             'f = tar.extractfile(m)\n                small[name] = f.read() if f is not None else b""',
             [T + 'test_bundle_mutants.py::test_packed_index_closes_the_archive'], True),
    Mutation('rootfs-link-checked-after-writing', 'jetson_deploy/service.py',
             "    _check_writable(dest)\n    _check_link(link)\n", "    _check_writable(dest)\n",
             [T + 'test_service_mutants.py::test_a_file_where_the_wants_link_goes_is_refused_before_anything_is_written'], True),
    # ---- issue 28: the GPU path's answers and doubles ---------------------------------------------
    Mutation('topk-small-ties-reversed', 'jetson_deploy/runtime/postprocess.py',
             '    ids = sorted(range(len(p)), key=p.__getitem__, reverse=True)[:max(1, topk)]',
             '    ids = sorted(range(len(p)), key=p.__getitem__)[::-1][:max(1, topk)]',
             [T + 'test_runtime_gpu_topk.py::test_tied_logits_come_out_lowest_index_first'], True),
    Mutation('numpy-port-truncates', 'jetson_deploy/runtime/gpu_preprocess.py',
             '        v = np.floor(top * gy + bot * fy + f32(0.5))',
             '        v = np.floor(top * gy + bot * fy)',
             [T + 'test_runtime_oracle.py::test_every_path_feeds_exact_bilinear_levels_without_bias'], True),
    Mutation('topk-reference-softmaxes-probabilities', 'jetson_deploy/runtime/gpu_topk.py',
             '            if looks_like_probs(row):',
             '            if False:',
             [T + 'test_runtime_gpu_topk.py::test_one_scores_rule_on_every_path'], True),
    Mutation('nan-row-made-up-class', 'jetson_deploy/runtime/postprocess.py',
             '                  if i >= 0 and s == s]',
             '                  if True]',
             [T + 'test_runtime_gpu_topk.py::test_one_scores_rule_on_every_path'], True),
    Mutation('host-resize-inter-linear', 'jetson_deploy/preprocess.py',
             'return getattr(cv2, "INTER_LINEAR_EXACT", cv2.INTER_LINEAR)',
             'return cv2.INTER_LINEAR',
             [T + 'test_runtime_oracle.py::test_every_path_feeds_exact_bilinear_levels_without_bias'], True),
    Mutation('kernel-cache-by-wrapper', 'jetson_deploy/runtime/gpu_preprocess.py',
             'key = ("pycuda", id(compiler), getattr(ctx, "handle", None), source, name)',
             'key = ("pycuda", id(compiler), id(ctx), source, name)',
             [T + 'test_runtime_gpu_preprocess.py::test_kernels_compile_once_per_context_whatever_wrapper_get_current_returns'], True),
    Mutation('wait-keeps-gil', 'jetson_deploy/runtime/cuda_graph.py',
             '            _prototyped(_open(LIBCUDA, True), _WAIT_CALLS, lib)',
             '            _prototyped(_open(LIBCUDA, False), _WAIT_CALLS, lib)',
             [T + 'test_runtime_gpu_capture.py::test_capture_warm_ups_wait_with_the_gil_released'], True),
    Mutation('torch-capture-global', 'jetson_deploy/runtime/cuda_graph.py',
             'return torch.cuda.graph(graph, capture_error_mode="thread_local", **kw)',
             'return torch.cuda.graph(graph, **kw)',
             [T + 'test_runtime_gpu_capture.py::test_torch_cuda_executor_captures_every_graph_thread_locally'], True),
    Mutation('blocking-frame-streams', 'jetson_deploy/runtime/memory.py',
             '    return cuda.Stream(flags=CU_STREAM_NON_BLOCKING)',
             '    return cuda.Stream()',
             [T + 'test_runtime_gpu_capture.py::test_pycuda_capture_survives_another_threads_legacy_stream_call'], True),
    Mutation('torch-ops-round-half-even', 'jetson_deploy/runtime/torch_preprocess.py',
             '            return torch.floor(x + 0.5).clamp_(0, 255)',
             '            return torch.round(x).clamp_(0, 255)',
             [T + 'test_runtime_oracle.py::test_torch_ops_round_half_up_drop_alpha_and_use_opencvs_gray_weights'], True),
    # ---- issue 27: the journeys' seams ---------------------------------------------------------
    Mutation('old-tensorrt-not-refused', 'jetson_deploy/deploy/trt_check.py',
             '    if force:\n        for p in problems:',
             '    if True:\n        for p in problems:',
             [T + 'test_bundle_compat.py::test_deploy_refuses_from_inventory_tensorrt_and_force_warns'], True),
    Mutation('advice-reconvert-opset13', 'jetson_deploy/bundle/opset.py',
             'if why.startswith("ONNX opset") and lower:',
             'if False and lower:',
             [T + 'test_journey_seams.py::test_what_a_board_says_of_its_tensorrt_and_the_advice_for_it'], True),
    Mutation('jetpack46-trt', 'jetson_deploy/deploy/trt_check.py',
             '("4.6", "8.2.1")',
             '("4.6", "8.4.1")',
             [T + 'test_journey_seams.py::test_what_a_board_says_of_its_tensorrt_and_the_advice_for_it'], True),
    Mutation('selftest-jetson-skips-trt', 'jetson_deploy/selftest.py',
             'if self.jetson or what in self.require:',
             'if what in self.require:',
             [T + 'test_journey_seams.py::test_selftest_fails_a_jetson_without_tensorrt_and_says_what_it_proved'], True),
    Mutation('holdout-advice-short', 'jetson_deploy/calibration/gate.py',
             '            return f\n',
             '            return f - 0.01\n',
             [T + 'test_journey_seams.py::test_holdout_warning_names_the_holdout_that_would_do'], True),
    Mutation('tar-header-checksum-ignored', 'jetson_deploy/bundle/archive.py',
             'if stored not in tarfile.calc_chksums(header):',
             'if False:',
             [T + 'test_journey_seams.py::test_a_flipped_byte_in_a_tar_header_is_a_corrupt_archive'], True),
    Mutation('attention-fast-path-kept', 'jetson_deploy/convert/export.py',
             '    was = get()\n    set_(False)',
             '    was = get()\n    set_(was)',
             [T + 'test_journey_seams.py::test_attention_exports_for_the_oldest_tensorrt_it_can_reach'], False),
    Mutation('gate-advice-ignores-asked', 'jetson_deploy/calibration/gate.py',
             '    if not asked:\n',
             '    if True:\n',
             [T + 'test_journey_seams.py::test_gate_advice_follows_auto_exclude_and_the_holdout_note'], False),
    Mutation('accuracy-for-foreign-labels', 'jetson_deploy/runtime/pipeline.py',
             'if names is not None and not set(names) <= known:',
             'if False:',
             [T + 'test_journey_seams.py::test_accuracy_only_when_the_source_truth_is_in_the_bundles_labels'], False),
    Mutation('quiet-ignored', 'jetson_deploy/cli.py',
             'h.setLevel(level)',
             'h.setLevel(logging.INFO)',
             [T + 'test_journey_seams.py::test_output_flags_top_k_and_the_global_quiet'], False),
    Mutation('ort-path-imports-torch', 'jetson_deploy/runtime/backends/__init__.py',
             '_cuda_driver_devices() > 0',
             '_cuda_available()',
             [T + 'test_journey_seams.py::test_the_onnxruntime_path_never_imports_torch'], False),
    # ---- issue 29: trust only what was verified -----------------------------------------------
    Mutation('verify-artifact-by-root', 'jetson_deploy/bundle/reader.py',
             'return self._handle.path / art["path"]',
             'return self.root / art["path"]',
             [T + 'test_trust_race.py::test_the_directory_renamed_and_replaced_after_verification_changes_nothing'], True),
    Mutation('labels-by-path', 'jetson_deploy/bundle/reader.py',
             'self.read_artifact(art).decode("utf-8")',
             '(self.root / art["path"]).read_text(encoding="utf-8")',
             [T + 'test_trust_race.py::test_the_directory_renamed_and_replaced_after_verification_changes_nothing'], True),
    Mutation('blank-require-key', 'jetson_deploy/bundle/sign.py',
             'if REQUIRE_KEY_ENV in os.environ:',
             'if os.environ.get(REQUIRE_KEY_ENV, "").strip():',
             [T + 'test_bad_input.py::test_blank_require_key_variable_refuses_to_run'], True),
    Mutation('unlisted-member-extracted', 'jetson_deploy/bundle/pack.py',
             'if name not in want:',
             'if name not in want and False:',
             [T + 'test_bad_input.py::test_disk_bomb_member_refused_before_extraction'], True),
    Mutation('description-percent-unescaped', 'jetson_deploy/service.py',
             '    return check_value(text, "unit text").replace("%", "%%")',
             '    return check_value(text, "unit text")',
             [T + 'test_service_unit.py::test_awkward_values_are_quoted_and_escaped'], True),
    Mutation('http-any-host', 'jetson_deploy/media/http_sink.py',
             '        return port == self.port and (host == "localhost" or host == self.host.lower())',
             '        return True',
             [T + 'test_media_http.py::test_dns_rebinding_gets_403_without_a_token'], True),
    Mutation('one-char-token', 'jetson_deploy/media/http_sink.py',
             'MIN_TOKEN = 16',
             'MIN_TOKEN = 1',
             [T + 'test_bad_input.py::test_sink_arguments_refused_before_the_run'], True),
    Mutation('run-sigterm-kills', 'jetson_deploy/cli.py',
             'signal.signal(signal.SIGTERM, _on_sigterm)',
             'pass',
             [T + 'test_runtime_signals.py::test_a_signal_publishes_a_live_runs_results'], True),
    Mutation('video-not-read-back', 'jetson_deploy/media/sinks.py',
             '            self._check_written()',
             '            pass',
             [T + 'test_bad_input.py::test_write_errors_fail_in_one_line_naming_the_file'], True),
    Mutation('host-dirs-collide', 'jetson_deploy/ansible_steps.py',
             '[A-Za-z0-9\\-]',
             '[A-Za-z0-9_\\-]',
             [T + 'test_bad_input.py::test_controller_host_directories_are_one_to_one'], True),
    Mutation('ssh-destination-as-option', 'jetson_deploy/deploy/transport.py',
             '["--", self.host.destination, "sh -s"]',
             '[self.host.destination, "sh -s"]',
             [T + 'test_bad_input.py::test_ssh_destination_follows_double_dash'], True),
    Mutation('sys-exit-in-import-silent', 'jetson_deploy/_lazy.py',
             'except (Exception, SystemExit) as exc:',
             'except Exception as exc:',
             [T + 'test_bad_input.py::test_a_tensorrt_that_calls_sys_exit_is_one_line'], True),
    # ---- issue 25: fleets that pull ---------------------------------------------------------------
    Mutation("agent-polls-always-update", "jetson_deploy/deploy/agent.py",
      'if digest == st["digest"] or (last.get("digest") == digest and last.get("sticky")):',
      'if False:', [T + "test_deploy_agent_poll.py"], False),
    Mutation("agent-refusal-not-sticky", "jetson_deploy/deploy/agent.py",
      'if digest == st["digest"] or (last.get("digest") == digest and last.get("sticky")):',
      'if digest == st["digest"]:', [T + "test_deploy_agent_fleet.py::test_failing_health_check_rolls_back_and_is_reported"], False),
    Mutation("agent-signature-checked-after-download", "jetson_deploy/deploy/agent_pull.py",
      "    if board.public_key is not None:\n        from ..bundle.sign import VALID",
      "    if False:\n        from ..bundle.sign import VALID", [T + "test_deploy_agent_fleet.py::test_refusals_keep_the_running_version_and_say_why"], True),
    Mutation("agent-tensorrt-unchecked", "jetson_deploy/deploy/agent_pull.py",
      "(compat_problem(manifest, board.tensorrt) if board.tensorrt else None)", "None",
      [T + "test_deploy_agent_fleet.py::test_refusals_keep_the_running_version_and_say_why"], True),
    Mutation("layer-digest-unchecked", "jetson_deploy/deploy/oci.py",
      'if have != size or "sha256:" + h.hexdigest() != digest:', "if have != size:",
      [T + "test_deploy_agent_fleet.py::test_refusals_keep_the_running_version_and_say_why"], False),
    Mutation("resume-starts-over", "jetson_deploy/deploy/oci.py",
      '{"Range": "bytes={}-".format(have)} if have else {}', "{}",
      [T + "test_deploy_agent_resume.py::test_agent_sigkilled_mid_download_then_resumed"], False),
    Mutation("short-read-deletes-partial", "jetson_deploy/deploy/oci.py",
      "        if have < size:  # the connection ended early", "        if False:  # the connection ended early",
      [T + "test_deploy_agent_resume.py::test_registry_killed_mid_download_then_resumed"], False),
    Mutation("bad-partial-kept", "jetson_deploy/deploy/oci.py",
      "        if have != size or \"sha256:\" + h.hexdigest() != digest:\n            part.unlink()",
      "        if have != size or \"sha256:\" + h.hexdigest() != digest:\n            pass", [T + "test_deploy_agent_oci.py::test_download_resumes_and_refuses_wrong_bytes"], True),
    Mutation("read-past-listed-size", "jetson_deploy/deploy/oci.py",
      "_paced(resp.raw, bwlimit, size + 1 - have)", "_paced(resp.raw, bwlimit, 1 << 40)",
      [T + "test_deploy_agent_oci.py::test_download_resumes_and_refuses_wrong_bytes"], True),
    Mutation("state-written-every-poll", "jetson_deploy/deploy/agent_state.py",
      "        if text != self._saved:\n", "        if True:\n", [T + "test_deploy_agent_poll.py"], False),
    Mutation("no-jitter", "jetson_deploy/deploy/agent.py", "return base * random.uniform(0.5, 1.0)", "return base",
      [T + "test_deploy_agent_faults.py::test_no_registry_fails_and_backs_off_with_jitter"], True),
    Mutation("space-ignores-unpacked", "jetson_deploy/deploy/agent_pull.py",
      "need = layer_left + unpacked * (2 if same else 1)", "need = layer_left",
      [T + "test_deploy_agent_faults.py::test_full_disk_is_refused_before_the_download"], False),
    Mutation("status-always-ok", "jetson_deploy/deploy/fleet_status.py",
      'b["health"] = b["state"] if b["state"] in PROBLEMS else', 'b["health"] = "ok" if True else',
      [T + "test_deploy_agent_fleet.py::test_refusals_keep_the_running_version_and_say_why"], False),
    Mutation("status-never-behind", "jetson_deploy/deploy/fleet_status.py",
      '("behind" if want and b.get("digest") != want else "ok")', '"ok"',
      [T + "test_deploy_agent_fleet.py::test_channels_promote_and_fleet_status"], False),
    Mutation("insecure-anywhere", "jetson_deploy/deploy/oci_ref.py",
      '    return loopback_name(host.rsplit(":", 1)[0]', '    return True or loopback_name(host.rsplit(":", 1)[0]',
      [T + "test_deploy_agent_oci.py::test_tls_trust_is_required"], True),
    Mutation("engines-only-unchecked", "jetson_deploy/deploy/agent_pull.py",
      'or any(a.get("kind") == "onnx" for a in arts):', 'or True:',
      [T + "test_deploy_agent_faults.py::test_what_this_board_will_not_run"], False),
    Mutation("agent-unit-no-restart", "jetson_deploy/service.py",
      '"--restart-service", self.bundle] + self.run_args', '] + self.run_args',
      [T + "test_fleet_service.py::test_agent_unit_text_is_valid_and_runs_the_agent"], True),
    Mutation("agent-unit-owned-unchecked", "jetson_deploy/commands/agent.py",
      "    if owned:\n", "    if False:\n", [T + "test_fleet_service.py::test_agent_options_are_checked_at_install"], True),
    Mutation("blob-reuploaded", "jetson_deploy/deploy/oci.py",
      "        if self.blob_exists(repo, digest):\n            return False", "        if False:\n            return False",
      [T + "test_deploy_agent_fleet.py::test_channels_promote_and_fleet_status"], False),
    Mutation("basic-not-remembered", "jetson_deploy/deploy/agent.py",
      '        self.registry.basic_auth = bool(self.state["basic_auth"])\n', "\n",
      [T + "test_deploy_agent_fleet.py::test_refusals_keep_the_running_version_and_say_why"], False),
    Mutation("engine-plan-unchecked", "jetson_deploy/deploy/remote_engine.py",
      "    if (got, got_size) != (sha, size):", "    if False:",
      [T + "test_fleet_engine.py"], False),
    Mutation("token-not-cached", "jetson_deploy/deploy/oci_auth.py",
      "        if tok is None or tok[1] <= time.monotonic():", "        if True:",
      [T + "test_deploy_agent_oci.py::test_bearer_token_auth"], True),
    Mutation("lock-not-taken", "jetson_deploy/deploy/agent_state.py",
      "            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)", "            pass",
      [T + "test_deploy_agent_faults.py::test_one_agent_per_root"], True),
    Mutation("sigterm-kills", "jetson_deploy/commands/agent.py", "    _stop_on_signals(stop)\n", "\n",
      [T + "test_deploy_agent_faults.py::test_sigterm_ends_the_loop_between_polls"], True),
    Mutation("reference-without-host", "jetson_deploy/deploy/oci_ref.py",
      'if not rest or not _HOST_RE.match(host) or not ("." in host or ":" in host or host == "localhost"):',
      'if not rest or not _HOST_RE.match(host):', [T + "test_deploy_agent_oci.py::test_references"], True),
    Mutation("probe-imports-everything", "jetson_deploy/deploy/agent.py",
      "    if tensorrt is None:\n        version", "    __import__('jetson_deploy.machine').machine.probe()\n    if tensorrt is None:\n        version",
      [T + "test_deploy_agent_faults.py::test_the_board_is_probed_once_without_cuda"], True),
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
