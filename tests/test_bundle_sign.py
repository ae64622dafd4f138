"""Ed25519 signatures over manifest.json: keygen, sign, states, tamper detection."""
import stat
import subprocess

import pytest

pytestmark = pytest.mark.needs("cryptography")

from support.bundles import edit_manifest, make_bundle  # noqa: E402
from jetson_deploy.bundle import add_engine, keygen, open_bundle, pack_bundle, sign_bundle, signature_state, verify_signature  # noqa: E402
from jetson_deploy.bundle.sign import INVALID, SIGNED_UNVERIFIED, UNSIGNED, VALID  # noqa: E402
from jetson_deploy.errors import BadInput, CheckFailed  # noqa: E402


@pytest.fixture()
def keys(tmp_path):
    return keygen(tmp_path / "keys" / "signer")


def test_keygen_writes_standard_files(tmp_path, keys):
    priv = (tmp_path / "keys" / "signer").read_bytes()
    pub = (tmp_path / "keys" / "signer.pub").read_text()
    assert priv.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert pub.startswith("ssh-ed25519 AAAA") and pub.rstrip().endswith("jetson-deploy")
    assert stat.S_IMODE((tmp_path / "keys" / "signer").stat().st_mode) == 0o600
    assert keys["fingerprint"].startswith("SHA256:")
    with pytest.raises(BadInput, match="already exists"):
        keygen(tmp_path / "keys" / "signer")


def test_sign_then_states(tmp_path, keys):
    d = make_bundle(tmp_path / "b")
    b = open_bundle(d)
    assert signature_state(b)[0] == UNSIGNED
    sign_bundle(d, keys["private_key"])
    b = open_bundle(d)  # manifest.sig is not an unlisted file
    assert signature_state(b)[0] == SIGNED_UNVERIFIED
    state, detail = signature_state(b, keys["public_key"])
    assert state == VALID and keys["fingerprint"] in detail
    assert (d / "manifest.sig").stat().st_size == 64
    other = keygen(tmp_path / "other")
    assert signature_state(b, other["public_key"])[0] == INVALID
    with pytest.raises(CheckFailed, match="signature INVALID"):
        verify_signature(b, other["public_key"])


def test_manifest_edited_without_resigning_is_invalid(tmp_path, keys):
    d = make_bundle(tmp_path / "b")
    sign_bundle(d, keys["private_key"])
    edit_manifest(d, lambda m: m["accuracy"].update(value=0.99))  # still schema-valid, checksums intact
    b = open_bundle(d)  # artifacts all match
    state, detail = signature_state(b, keys["public_key"])
    assert state == INVALID and "does not match" in detail


def test_signature_file_tampered_or_truncated(tmp_path, keys):
    d = make_bundle(tmp_path / "b")
    sign_bundle(d, keys["private_key"])
    sig = (d / "manifest.sig").read_bytes()
    (d / "manifest.sig").write_bytes(sig[:-1] + bytes([sig[-1] ^ 1]))
    assert signature_state(open_bundle(d), keys["public_key"])[0] == INVALID
    (d / "manifest.sig").write_bytes(sig[:40])
    assert signature_state(open_bundle(d), keys["public_key"])[0] == INVALID


def test_unsigned_bundle_fails_key_check(tmp_path, keys):
    b = open_bundle(make_bundle(tmp_path / "b"))
    with pytest.raises(CheckFailed, match="not signed"):
        verify_signature(b, keys["public_key"])


def test_sign_refuses_tampered_bundle(tmp_path, keys):
    d = make_bundle(tmp_path / "b")
    (d / "labels.txt").write_text("cat\n")
    with pytest.raises(CheckFailed, match="artifact labels.txt"):
        sign_bundle(d, keys["private_key"])
    assert not (d / "manifest.sig").exists()


def test_signature_survives_pack_and_goes_stale_on_add_engine(tmp_path, keys):
    d = make_bundle(tmp_path / "b")
    sign_bundle(d, keys["private_key"])
    pack_bundle(d, tmp_path / "b.jdb")
    with open_bundle(tmp_path / "b.jdb") as pb:
        assert signature_state(pb, keys["public_key"])[0] == VALID
    add_engine(d, b"PLAN", {"tensorrt": "10.3.0", "sm": 87, "precision": "fp16"})
    b = open_bundle(d)
    assert signature_state(b, keys["public_key"])[0] == UNSIGNED
    sign_bundle(d, keys["private_key"])
    assert signature_state(open_bundle(d), keys["public_key"])[0] == VALID


def test_pem_public_key_and_encrypted_private_key(tmp_path, monkeypatch):
    k = keygen(tmp_path / "enc", password=b"s3cret", public_format="pem")
    assert open(k["public_key"]).read().startswith("-----BEGIN PUBLIC KEY-----")
    d = make_bundle(tmp_path / "b")
    monkeypatch.delenv("JETSON_DEPLOY_KEY_PASSWORD", raising=False)
    with pytest.raises(BadInput, match="JETSON_DEPLOY_KEY_PASSWORD"):
        sign_bundle(d, k["private_key"])
    monkeypatch.setenv("JETSON_DEPLOY_KEY_PASSWORD", "s3cret")
    sign_bundle(d, k["private_key"])
    assert signature_state(open_bundle(d), k["public_key"])[0] == VALID
    with pytest.raises(BadInput, match="private key"):
        signature_state(open_bundle(d), k["private_key"])


def test_non_ed25519_keys_are_refused(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    p = tmp_path / "ec.pem"
    p.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    with pytest.raises(BadInput, match="not an Ed25519 key"):
        sign_bundle(make_bundle(tmp_path / "b"), p)


@pytest.mark.needs("bin:openssl")
def test_openssl_can_check_the_signature(tmp_path):
    k = keygen(tmp_path / "k", public_format="pem")
    d = make_bundle(tmp_path / "b")
    sign_bundle(d, k["private_key"])
    r = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", k["public_key"], "-rawin",
                        "-in", str(d / "manifest.json"), "-sigfile", str(d / "manifest.sig")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    if "rawin" in r.stderr and r.returncode != 0 and "Unknown" in r.stderr:
        pytest.skip("openssl too old for -rawin")
    assert r.returncode == 0, r.stderr
