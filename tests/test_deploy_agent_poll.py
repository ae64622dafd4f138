"""The cost of a quiet fleet: 50 agents polling one real registry with nothing new to fetch make one
request per poll each, a ``HEAD`` of their tag, counted by the agents and in the registry's own
access log (the User-Agent names the board).  A 2-minute run of 50 agent processes is
scripts/bench_fleet_poll.py; this checks the property over a few polls."""
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from support.fleet import keypair, needs_registry, publish, signed_bundle, wait_for

pytestmark = [pytest.mark.needs(*needs_registry), pytest.mark.slow]

AGENTS, POLLS = 50, 4


def test_fifty_quiet_agents_make_one_head_per_poll(registry, tmp_path):
    from jetson_deploy.deploy import DeployOptions
    from jetson_deploy.deploy.agent import Agent, AgentOptions

    key = keypair(tmp_path, "fleet")
    ref = "{}/fleet/quiet:stable".format(registry.host)
    publish(registry, signed_bundle(tmp_path, "1.0.0", key, sizes={"model.onnx": 2000, "labels.txt": 32}), ref)
    agents = [Agent(AgentOptions(ref, DeployOptions(root=str(tmp_path / "b{:02d}".format(i))), registry.options(),
                                 public_key=key["public_key"], interval=0.05, board="q{:02d}".format(i), tensorrt="8.6.2", sm=87))
              for i in range(AGENTS)]
    for a in agents:
        a.__enter__()
    try:
        with ThreadPoolExecutor(8) as pool:  # the first poll activates the bundle on every board
            assert set(pool.map(lambda a: a.poll().result, agents)) == {"deployed"}
        for a in agents:  # a status report the registry failed under the burst is retried at the next poll
            if a.state["report_pending"]:
                assert a.poll().result == "unchanged"
        assert not [a.o.board for a in agents if a.state["report_pending"]]
        mark = registry.mark()
        written = {a.o.board: a.state.path.stat().st_mtime_ns for a in agents}
        results = {}

        def quiet(a):
            outs = []
            for _ in range(POLLS):
                outs.append(a.poll())
                threading.Event().wait(a.delay(outs[-1]))
            results[a.o.board] = outs

        threads = [threading.Thread(target=quiet, args=(a,)) for a in agents]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
    finally:
        for a in agents:
            a.__exit__(None, None, None)
    assert len(results) == AGENTS
    for board, outs in results.items():
        assert [(o.result, o.requests) for o in outs] == [("unchanged", 1)] * POLLS, (board, outs)
    # the registry's side of it: the access log, once every line of this run is written
    wait_for(lambda: len(registry.accesses(mark)) >= AGENTS * POLLS, 30, "the registry's access log")
    seen = registry.accesses(mark)
    assert len(seen) == AGENTS * POLLS
    assert {(a.method, a.path, a.status) for a in seen} == {("HEAD", "/v2/fleet/quiet/manifests/stable", 200)}
    per_board = {}
    for a in seen:
        per_board[a.agent.rsplit("board/", 1)[-1]] = per_board.get(a.agent.rsplit("board/", 1)[-1], 0) + 1
    assert per_board == {"q{:02d}".format(i): POLLS for i in range(AGENTS)}
    # quiet polls write nothing on the board (an SD card is not rewritten every interval)
    assert {a.o.board: a.state.path.stat().st_mtime_ns for a in agents} == written
