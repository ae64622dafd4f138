"""``fleet status REPO``: every board's version and health, from the status records agents publish.

Each agent tags its status record ``REPO/status:BOARD`` (:mod:`.artifact`) after each update
attempt.  This lists those tags, reads each record (one manifest GET per board, a few at once),
and compares each board with the tag it follows: ``ok`` (on the tag's digest), ``behind`` (the tag
moved after the board's last attempt: it has not polled since), ``refused``, ``rolled-back`` or
``failed`` (the board kept its version; the message says why).
"""
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Optional

from ..errors import JetsonDeployError
from . import artifact
from .oci import Registry, RegistryOptions
from .oci_ref import Reference

PROBLEMS = ("refused", "rolled-back", "failed")


def _channels(reg: "Registry", repo: str, tags: "List[str]") -> "Dict[str, Dict[str, str]]":
    out: "Dict[str, Dict[str, str]]" = {}
    for tag in sorted(set(tags)):
        try:
            body, _, digest = reg.get_manifest(repo, tag)
            pb = artifact.parse_bundle_manifest(body, digest, tag)
            out[tag] = {"digest": digest, "version": pb.version, "name": pb.name}
        except JetsonDeployError as exc:
            out[tag] = {"digest": "", "version": "", "name": "", "error": str(exc)}
    return out


def _records(host: str, options: "Optional[RegistryOptions]", repo: str, tags: "List[str]", jobs: int) -> "List[Dict[str, str]]":
    local = threading.local()
    made: "List[Registry]" = []

    def one(tag: str) -> "Optional[Dict[str, str]]":
        reg = getattr(local, "reg", None)
        if reg is None:
            reg = local.reg = Registry(host, options)
            made.append(reg)
        try:
            body, _, _ = reg.get_manifest(repo, tag)
        except JetsonDeployError as exc:
            if getattr(exc, "status", None) == 404:
                return None  # the tag went between the list and the read
            raise
        rec = artifact.parse_status(body)
        if rec is not None:
            rec["board"] = rec.get("board") or tag
        return rec

    try:
        with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(tags)))) as pool:
            return [r for r in pool.map(one, tags) if r is not None]
    finally:
        for reg in made:
            reg.close()


def fleet_status(ref: str, options: "Optional[RegistryOptions]" = None, status_repo: "Optional[str]" = None,
                 jobs: int = 8) -> "Dict[str, Any]":
    """``{"repository", "status_repository", "channels": {tag: {digest, version}}, "boards": [...], "ok"}``.
    With a tag in REF only the boards following that tag are listed."""
    r = Reference.parse(ref)
    srepo = r.with_repo(status_repo or "{}/{}".format(r.repo, artifact.STATUS_SUFFIX)).repo
    reg = Registry(r.host, options)
    try:
        records = _records(r.host, options, srepo, reg.list_tags(srepo), jobs)
        prefix = "{}/{}:".format(r.host, r.repo)
        if r.tag:
            records = [b for b in records if b.get("ref") == "{}{}".format(prefix, r.tag)]
        follow = [b["ref"][len(prefix):] for b in records if b.get("ref", "").startswith(prefix)]
        channels = _channels(reg, r.repo, follow + ([r.tag] if r.tag else []))
    finally:
        reg.close()
    for b in records:
        tag = b["ref"][len(prefix):] if b.get("ref", "").startswith(prefix) else ""
        b["channel"] = tag
        want = channels.get(tag, {}).get("digest")
        b["health"] = b["state"] if b["state"] in PROBLEMS else ("behind" if want and b.get("digest") != want else "ok")
    records.sort(key=lambda b: b["board"])
    return {"repository": "{}/{}".format(r.host, r.repo), "status_repository": srepo, "channels": channels,
            "boards": records, "ok": not any(b["health"] in PROBLEMS for b in records)}


def format_fleet(res: "Dict[str, Any]") -> str:
    chans = ", ".join("{} -> {} ({})".format(t, c.get("version") or "?", (c.get("digest") or c.get("error", "?"))[:19])
                      for t, c in sorted(res["channels"].items()))
    lines = ["{}: {}".format(res["repository"], chans or "no channel")]
    if not res["boards"]:
        lines.append("no board has reported to {} yet".format(res["status_repository"]))
        return "\n".join(lines)
    rows = [("BOARD", "CHANNEL", "ACTIVE", "HEALTH", "LAST ATTEMPT", "MESSAGE")]
    for b in res["boards"]:
        rows.append((b["board"], b["channel"] or "-", b.get("version") or "-", b["health"], b.get("time") or "-",
                     _message(b)))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines += ["  ".join(row[i].ljust(widths[i]) for i in range(5)) + "  " + row[5] for row in rows]
    counts: "Dict[str, int]" = {}
    for b in res["boards"]:
        counts[b["health"]] = counts.get(b["health"], 0) + 1
    lines.append("{} boards: {}".format(len(res["boards"]), ", ".join("{} {}".format(n, h) for h, n in sorted(counts.items()))))
    return "\n".join(lines)


def _message(b: "Dict[str, str]") -> str:
    if b["health"] in PROBLEMS and b.get("attempt_version"):
        return "{} {}: {}".format(b["attempt_version"], b["health"], b.get("message", ""))
    return b.get("message", "")
