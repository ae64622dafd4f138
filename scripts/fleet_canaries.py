#!/usr/bin/env python3
"""Mutation canaries for the pull fleet (issue 25), in scripts/mutation_canary.py's format, to be
merged into its MUTATIONS (``MUTATIONS += FLEET_MUTATIONS``); until then this runs them:

    python scripts/fleet_canaries.py            # all 26 (~4 min on 2 quiet cores)
    python scripts/fleet_canaries.py --only no-jitter,lock-not-taken

``fast`` marks the ones under ~6 s each.
"""
import sys

from mutation_canary import Mutation as M
import mutation_canary as mc

T = "tests/"
F = "tests/test_deploy_agent_fleet.py::"
FLEET_MUTATIONS = [
    M("agent-polls-always-update", "jetson_deploy/deploy/agent.py",
      'if digest == st["digest"] or (last.get("digest") == digest and last.get("sticky")):',
      'if False:', [T + "test_deploy_agent_poll.py"], True),
    M("agent-refusal-not-sticky", "jetson_deploy/deploy/agent.py",
      'if digest == st["digest"] or (last.get("digest") == digest and last.get("sticky")):',
      'if digest == st["digest"]:', [F + "test_failing_health_check_rolls_back_and_is_reported"], True),
    M("agent-signature-checked-after-download", "jetson_deploy/deploy/agent_pull.py",
      "    if board.public_key is not None:\n        from ..bundle.sign import VALID",
      "    if False:\n        from ..bundle.sign import VALID", [F + "test_refusals_keep_the_running_version_and_say_why"], True),
    M("agent-tensorrt-unchecked", "jetson_deploy/deploy/agent_pull.py",
      "(compat_problem(manifest, board.tensorrt) if board.tensorrt else None)", "None",
      [F + "test_refusals_keep_the_running_version_and_say_why"], True),
    M("layer-digest-unchecked", "jetson_deploy/deploy/oci.py",
      'if have != size or "sha256:" + h.hexdigest() != digest:', "if have != size:",
      [F + "test_refusals_keep_the_running_version_and_say_why"], True),
    M("resume-starts-over", "jetson_deploy/deploy/oci.py",
      '{"Range": "bytes={}-".format(have)} if have else {}', "{}",
      [T + "test_deploy_agent_resume.py::test_agent_sigkilled_mid_download_then_resumed"], True),
    M("short-read-deletes-partial", "jetson_deploy/deploy/oci.py",
      "        if have < size:  # the connection ended early", "        if False:  # the connection ended early",
      [T + "test_deploy_agent_resume.py::test_registry_killed_mid_download_then_resumed"], True),
    M("bad-partial-kept", "jetson_deploy/deploy/oci.py",
      "        if have != size or \"sha256:\" + h.hexdigest() != digest:\n            part.unlink()",
      "        if have != size or \"sha256:\" + h.hexdigest() != digest:\n            pass", [T + "test_deploy_agent_oci.py::test_download_resumes_and_refuses_wrong_bytes"], True),
    M("read-past-listed-size", "jetson_deploy/deploy/oci.py",
      "_paced(resp.raw, bwlimit, size + 1 - have)", "_paced(resp.raw, bwlimit, 1 << 40)",
      [T + "test_deploy_agent_oci.py::test_download_resumes_and_refuses_wrong_bytes"], True),
    M("state-written-every-poll", "jetson_deploy/deploy/agent_state.py",
      "        if text != self._saved:\n", "        if True:\n", [T + "test_deploy_agent_poll.py"], True),
    M("no-jitter", "jetson_deploy/deploy/agent.py", "return base * random.uniform(0.5, 1.0)", "return base",
      [T + "test_deploy_agent_faults.py::test_no_registry_fails_and_backs_off_with_jitter"], True),
    M("space-ignores-unpacked", "jetson_deploy/deploy/agent_pull.py",
      "need = layer_left + unpacked * (2 if same else 1)", "need = layer_left",
      [T + "test_deploy_agent_faults.py::test_full_disk_is_refused_before_the_download"], True),
    M("status-always-ok", "jetson_deploy/deploy/fleet_status.py",
      'b["health"] = b["state"] if b["state"] in PROBLEMS else', 'b["health"] = "ok" if True else',
      [F + "test_refusals_keep_the_running_version_and_say_why"], True),
    M("status-never-behind", "jetson_deploy/deploy/fleet_status.py",
      '("behind" if want and b.get("digest") != want else "ok")', '"ok"',
      [F + "test_channels_promote_and_fleet_status"], True),
    M("insecure-anywhere", "jetson_deploy/deploy/oci_ref.py",
      '    return loopback_name(host.rsplit(":", 1)[0]', '    return True or loopback_name(host.rsplit(":", 1)[0]',
      [T + "test_deploy_agent_oci.py::test_tls_trust_is_required"], True),
    M("engines-only-unchecked", "jetson_deploy/deploy/agent_pull.py",
      'or any(a.get("kind") == "onnx" for a in arts):', 'or True:',
      [T + "test_deploy_agent_faults.py::test_what_this_board_will_not_run"], True),
    M("agent-unit-no-restart", "jetson_deploy/service.py",
      '"--restart-service", self.bundle] + self.run_args', '] + self.run_args',
      [T + "test_fleet_service.py::test_agent_unit_text_is_valid_and_runs_the_agent"], True),
    M("agent-unit-owned-unchecked", "jetson_deploy/commands/agent.py",
      "    if owned:\n", "    if False:\n", [T + "test_fleet_service.py::test_agent_options_are_checked_at_install"], True),
    M("blob-reuploaded", "jetson_deploy/deploy/oci.py",
      "        if self.blob_exists(repo, digest):\n            return False", "        if False:\n            return False",
      [F + "test_channels_promote_and_fleet_status"], True),
    M("basic-not-remembered", "jetson_deploy/deploy/agent.py",
      '        self.registry.basic_auth = bool(self.state["basic_auth"])\n', "\n",
      [F + "test_refusals_keep_the_running_version_and_say_why"], True),
    M("engine-plan-unchecked", "jetson_deploy/deploy/remote_engine.py",
      "    if (got, got_size) != (sha, size):", "    if False:",
      [T + "test_fleet_engine.py"], True),
    M("token-not-cached", "jetson_deploy/deploy/oci_auth.py",
      "        if tok is None or tok[1] <= time.monotonic():", "        if True:",
      [T + "test_deploy_agent_oci.py::test_bearer_token_auth"], True),
    M("lock-not-taken", "jetson_deploy/deploy/agent_state.py",
      "            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)", "            pass",
      [T + "test_deploy_agent_faults.py::test_one_agent_per_root"], True),
    M("sigterm-kills", "jetson_deploy/commands/agent.py", "    _stop_on_signals(stop)\n", "\n",
      [T + "test_deploy_agent_faults.py::test_sigterm_ends_the_loop_between_polls"], True),
    M("reference-without-host", "jetson_deploy/deploy/oci_ref.py",
      'if not rest or not _HOST_RE.match(host) or not ("." in host or ":" in host or host == "localhost"):',
      'if not rest or not _HOST_RE.match(host):', [T + "test_deploy_agent_oci.py::test_references"], True),
    M("probe-imports-everything", "jetson_deploy/deploy/agent.py",
      "    if tensorrt is None:\n        version", "    __import__('jetson_deploy.machine').machine.probe()\n    if tensorrt is None:\n        version",
      [T + "test_deploy_agent_faults.py::test_the_board_is_probed_once_without_cuda"], True),
]

SLOW = {"agent-polls-always-update", "agent-refusal-not-sticky", "layer-digest-unchecked", "resume-starts-over", "short-read-deletes-partial", "state-written-every-poll", "status-always-ok", "status-never-behind", "engines-only-unchecked", "blob-reuploaded", "basic-not-remembered", "engine-plan-unchecked", "space-ignores-unpacked"}
FLEET_MUTATIONS = [m._replace(fast=m.id not in SLOW) for m in FLEET_MUTATIONS]

if __name__ == "__main__":
    mc.MUTATIONS = FLEET_MUTATIONS
    sys.argv = [sys.argv[0], "--all"] + sys.argv[1:]
    sys.exit(mc.main())
