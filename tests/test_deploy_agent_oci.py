"""The agent's registry client (jetson_deploy.deploy.oci, standard library only) against a real
docker-registry: where credentials come from, TLS trust, Bearer token auth as Docker Hub, GHCR and
Harbor do it, and what reaches disk on a short or wrong download.  Device-side: runs under 3.6 too."""
import hashlib
import json
import os

import pytest

from support.fleet import jd, keypair, needs_registry, publish, signed_bundle
from support.registry import PASSWORD, USER, RegistryServer
from jetson_deploy.deploy.oci import Registry, RegistryError, RegistryOptions, RegistryUnreachable
from jetson_deploy.deploy.oci_ref import Reference
from jetson_deploy.errors import BadInput, CheckFailed

pytestmark = [pytest.mark.needs(*needs_registry), pytest.mark.slow]


def test_references():
    r = Reference.parse("registry.local:5000/fleet/shapes:stable")
    assert (r.host, r.repo, r.tag, r.digest) == ("registry.local:5000", "fleet/shapes", "stable", None)
    r = Reference.parse("127.0.0.1:5000/a/b@sha256:" + "ab" * 32)
    assert r.ref == "sha256:" + "ab" * 32 and r.tag is None
    assert Reference.parse("localhost/x").tag is None
    for bad, words in [("fleet/shapes:stable", "no registry host"), ("reg.local:5000/Fleet/x:y", "lower-case"),
                       ("reg.local/x:-bad", "a tag is"), ("reg.local/x@sha256:12", "not a sha256 digest"),
                       ("https://reg.local/x:y", "without a scheme"), ("reg.local/x", "names no tag")]:
        with pytest.raises(BadInput, match=words):
            Reference.parse(bad, tag_required=True)


def _digest(registry, ref):
    reg = Registry(registry.host, registry.options())
    try:
        return reg.head_manifest("fleet/oci", ref)
    finally:
        reg.close()


@pytest.fixture(scope="module")
def published(registry, tmp_path_factory):
    base = tmp_path_factory.mktemp("oci")
    b = signed_bundle(base, "1.0.0", keypair(base, "k"))
    return publish(registry, b, "{}/fleet/oci:stable".format(registry.host))


def test_credential_sources(registry, published, tmp_path, monkeypatch):
    opts = dict(ca_cert=registry.ca_cert)
    # the Docker config (what docker login / oras login write) is used everywhere else; here the others
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "empty"))
    with pytest.raises(RegistryError, match="needs credentials .*docker login"):
        Registry(registry.host, RegistryOptions(**opts)).head_manifest("fleet/oci", "stable")
    monkeypatch.setenv("JETSON_DEPLOY_REGISTRY_PASSWORD", PASSWORD)
    reg = Registry(registry.host, RegistryOptions(username=USER, **opts))
    assert reg.head_manifest("fleet/oci", "stable") == published["digest"] and reg.requests == 2  # 401, then Basic
    assert reg.head_manifest("fleet/oci", "stable") == published["digest"] and reg.requests == 3  # Basic from then on
    reg.close()
    monkeypatch.setenv("JETSON_DEPLOY_REGISTRY_PASSWORD", "wrong")
    with pytest.raises(RegistryError, match="the registry refused the credentials of Credentials\\('jd-fleet' from --username\\)"):
        Registry(registry.host, RegistryOptions(username=USER, **opts)).head_manifest("fleet/oci", "stable")
    # a credential helper (docker-credential-NAME get, host on stdin, JSON out)
    helper_dir = tmp_path / "bin"
    helper_dir.mkdir()
    helper = helper_dir / "docker-credential-jdtest"
    helper.write_text('#!/bin/sh\nread host\n[ "$1" = get ] && [ "$host" = "{}" ] || exit 1\n'
                      'echo \'{{"ServerURL": "\'$host\'", "Username": "{}", "Secret": "{}"}}\'\n'.format(registry.host, USER, PASSWORD))
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", str(helper_dir) + os.pathsep + os.environ["PATH"])
    cfg = tmp_path / "helper"
    cfg.mkdir()
    (cfg / "config.json").write_text(json.dumps({"credHelpers": {registry.host: "jdtest"}}))
    reg = Registry(registry.host, RegistryOptions(docker_config=str(cfg), **opts))
    assert repr(reg.creds) == "Credentials('jd-fleet' from docker-credential-jdtest)"
    assert reg.head_manifest("fleet/oci", "stable") == published["digest"]
    (cfg / "config.json").write_text(json.dumps({"credsStore": "missing-helper"}))
    with pytest.raises(BadInput, match="docker-credential-missing-helper is not installed"):
        Registry(registry.host, RegistryOptions(docker_config=str(cfg), **opts))


def test_tls_trust_is_required(registry, published):
    with pytest.raises(RegistryUnreachable, match="TLS certificate not trusted .*--ca-cert"):
        Registry(registry.host, RegistryOptions(docker_config=str(registry.docker_config))).head_manifest("fleet/oci", "stable")
    r = jd(["fleet", "status", registry.host + "/fleet/oci", "--docker-config", str(registry.docker_config)])
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "--ca-cert" in r.stderr, r.stderr
    with pytest.raises(BadInput, match="--insecure .* refused for reg.example.com"):
        Registry("reg.example.com", RegistryOptions(insecure=True))
    with pytest.raises(BadInput, match="not a PEM certificate"):
        Registry(registry.host, RegistryOptions(ca_cert=str(registry.docker_config / "config.json")))


def test_download_resumes_and_refuses_wrong_bytes(registry, published, tmp_path):
    reg = Registry(registry.host, registry.options())
    layer = published["layer"]
    dest = tmp_path / "layer.jdb"
    part = tmp_path / "layer.jdb.part"
    blob = registry.blob_path(layer["digest"]).read_bytes()
    part.write_bytes(blob[:1000])
    mark = registry.mark()
    reg.download_blob("fleet/oci", layer["digest"], layer["size"], dest)
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == layer["digest"].split(":")[1] and not part.exists()
    assert [(a.status, a.size) for a in registry.accesses(mark) if a.status != 401] == [(206, layer["size"] - 1000)]
    # a partial file with wrong bytes: all of it arrives, the digest fails, nothing stays behind
    dest.unlink()
    part.write_bytes(b"\0" * 1000)
    with pytest.raises(CheckFailed, match="tampered or corrupted"):
        reg.download_blob("fleet/oci", layer["digest"], layer["size"], dest)
    assert not dest.exists() and not part.exists()
    # a registry that serves more than the manifest lists is cut off at the size
    with pytest.raises(CheckFailed, match="arrived with {} bytes".format(layer["size"] - 10)):
        reg.download_blob("fleet/oci", layer["digest"], layer["size"] - 11, dest)
    reg.close()


def test_bearer_token_auth(tmp_path):
    srv = RegistryServer.start(tmp_path / "reg", token=True)
    try:
        key = keypair(tmp_path, "k")
        ref = "{}/fleet/bearer:stable".format(srv.host)
        res = publish(srv, signed_bundle(tmp_path, "1.0.0", key), ref)
        # the scope the registry challenged with (its order of actions is its own: pull,push or push,pull)
        scopes = [(r.rsplit(":", 1)[0], set(r.rsplit(":", 1)[1].split(","))) for r in srv.tokens.requests]
        assert ("repository:fleet/bearer", {"pull", "push"}) in scopes, srv.tokens.requests
        r = jd(["agent", ref, "--root", str(tmp_path / "board"), "--key", key["public_key"], "--once", "--json",
                "--board-id", "t1", "--tensorrt", "8.6.2", "--sm", "87"] + srv.args())
        assert r.returncode == 0 and json.loads(r.stdout)["result"] == "deployed", r.stdout + r.stderr
        # a token per scope, reused until it expires: a quiet poll is one HEAD
        reg = Registry(srv.host, srv.options())
        n = len(srv.tokens.requests)
        assert reg.head_manifest("fleet/bearer", "stable") == res["digest"]
        assert reg.head_manifest("fleet/bearer", "stable") == res["digest"]
        assert reg.requests == 4 and len(srv.tokens.requests) == n + 1  # 401, the token, HEAD, HEAD
        reg.close()
        (tmp_path / "none").mkdir()
        (tmp_path / "none" / "config.json").write_text("{}")
        bad = RegistryOptions(ca_cert=srv.ca_cert, docker_config=str(tmp_path / "none"))
        with pytest.raises(RegistryError, match="refused anonymous access for repository:fleet/bearer:pull"):
            Registry(srv.host, bad).head_manifest("fleet/bearer", "stable")
    finally:
        srv.close()
