"""``jetson-deploy bundle ...``: inspect, verify, sign, keygen, pack, unpack, add-engine, export, cache.

Thin wrappers over :mod:`jetson_deploy.bundle`; exit 0 ok, 1 failed check, 2 bad input.
"""
import json
import os
from typing import Any, Optional

import click

from ._options import json_option, key_option


def _echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=True))


def _style(text: str, **kw: Any) -> str:
    return click.style(text, **kw)


key_option_pub = click.option("--key", "key", type=click.Path(dir_okay=False), default=None,
                              help="Ed25519 public key (OpenSSH .pub or PEM) to check manifest.sig against.")


@click.group()
def bundle() -> None:
    """Inspect, verify, sign, pack and extend bundles (see docs/bundle-format.md).

    \b
    Examples:
      jetson-deploy bundle keygen -o signing
      jetson-deploy bundle sign shapes-1.0.0 --key signing
      jetson-deploy bundle verify shapes-1.0.0 --key signing.pub
      jetson-deploy bundle pack shapes-1.0.0 -o shapes-1.0.0.jdb
    """


@bundle.command()
@click.argument("bundle_path", metavar="BUNDLE", type=click.Path())
@key_option_pub
@json_option()
def inspect(bundle_path: str, key: "Optional[str]", as_json: bool) -> None:
    """Show what BUNDLE holds: name, version, spec, precision, accuracy, calibration,
    engine targets, artifacts with sizes, signature state (fast: sizes only, no hashing).

    \b
    Examples:
      jetson-deploy bundle inspect shapes-1.0.0
      jetson-deploy bundle inspect shapes-1.0.0.jdb --json
    """
    from ..bundle.report import inspect_bundle, render_inspect

    info = inspect_bundle(bundle_path, public_key=key)
    if as_json:
        _echo_json(info)
    else:
        click.echo(render_inspect(info, style=_style))


@bundle.command()
@click.argument("bundle_path", metavar="BUNDLE", type=click.Path())
@key_option_pub
@json_option()
@click.pass_context
def verify(ctx: "click.Context", bundle_path: str, key: "Optional[str]", as_json: bool) -> None:
    """Check BUNDLE: manifest schema, every artifact's size and sha256, no unlisted
    files, and with --key the Ed25519 signature. Exit 1 naming each mismatch (a damaged
    packed file is reported as a corrupt archive).

    \b
    Examples:
      jetson-deploy bundle verify shapes-1.0.0
      jetson-deploy bundle verify shapes-1.0.0.jdb --key signing.pub
    """
    from ..bundle.report import render_verify, verify_bundle

    report = verify_bundle(bundle_path, public_key=key)
    if as_json:
        _echo_json(report)
    else:
        click.echo(render_verify(report, style=_style))
    if not report["ok"]:
        ctx.exit(1)


@bundle.command()
@click.argument("bundle_path", metavar="BUNDLE", type=click.Path())
@click.option("--key", "key", required=True, type=click.Path(dir_okay=False),
              help="Ed25519 private key (PEM or OpenSSH); encrypted keys read JETSON_DEPLOY_KEY_PASSWORD.")
@json_option()
def sign(bundle_path: str, key: str, as_json: bool) -> None:
    """Verify BUNDLE, then write manifest.sig: a detached Ed25519 signature over manifest.json.

    \b
    Example:
      jetson-deploy bundle sign shapes-1.0.0 --key signing
    """
    from ..bundle.sign import sign_bundle

    out = sign_bundle(bundle_path, key)
    if as_json:
        _echo_json(out)
    else:
        click.echo("signed {} with key {}".format(out["bundle"], out["fingerprint"]))


@bundle.command()
@click.option("-o", "--output", "prefix", required=True, type=click.Path(dir_okay=False),
              help="Write the private key to PREFIX and the public key to PREFIX.pub.")
@click.option("--comment", default="jetson-deploy", show_default=True, help="Comment at the end of the OpenSSH public key line.")
@click.option("--pem-public", is_flag=True, help="Write the public key as PEM instead of one OpenSSH line.")
@click.option("--force", is_flag=True, help="Overwrite existing key files.")
@json_option()
def keygen(prefix: str, comment: str, pem_public: bool, force: bool, as_json: bool) -> None:
    """Create an Ed25519 signing key pair: PREFIX (PEM PKCS#8, mode 0600) and PREFIX.pub.
    Set JETSON_DEPLOY_KEY_PASSWORD to encrypt the private key.

    \b
    Example:
      jetson-deploy bundle keygen -o signing        # signing (private) and signing.pub
    """
    from ..bundle.sign import keygen as _keygen

    pw = os.environ.get("JETSON_DEPLOY_KEY_PASSWORD")
    out = _keygen(prefix, comment=comment, password=pw.encode("utf-8") if pw else None, overwrite=force,
                  public_format="pem" if pem_public else "openssh")
    if as_json:
        _echo_json(out)
    else:
        click.echo("private key  {}\npublic key   {}\nfingerprint  {}".format(out["private_key"], out["public_key"], out["fingerprint"]))


@bundle.command()
@click.argument("bundle_dir", metavar="BUNDLE_DIR", type=click.Path())
@click.option("-o", "--output", "out", required=True, type=click.Path(dir_okay=False), help="Packed bundle file to write (.jdb or .tar).")
@json_option()
def pack(bundle_dir: str, out: str, as_json: bool) -> None:
    """Pack BUNDLE_DIR into one deterministic tar file (same bundle, same bytes),
    checking every artifact's sha256 while streaming it.

    \b
    Example:
      jetson-deploy bundle pack shapes-1.0.0 -o shapes-1.0.0.jdb
    """
    from ..bundle.archive import pack_bundle
    from ..bundle.report import human_size

    res = pack_bundle(bundle_dir, out)
    if as_json:
        _echo_json(res)
    else:
        click.echo("packed {} -> {} ({}, {} files)".format(res["bundle"], res["path"], human_size(res["size"]), res["files"]))


@bundle.command()
@click.argument("archive", metavar="FILE", type=click.Path())
@click.option("-o", "--output", "out", required=True, type=click.Path(file_okay=False), help="Directory to create for the bundle.")
@click.option("--max-size", type=click.IntRange(1, None), default=None, help="Refuse archives whose content exceeds this many bytes (default 32 GiB).")
@json_option()
def unpack(archive: str, out: str, max_size: "Optional[int]", as_json: bool) -> None:
    """Unpack a packed bundle FILE safely into a new directory and verify it
    (absolute paths, '..', links, devices and oversized members are refused).

    \b
    Example:
      jetson-deploy bundle unpack shapes-1.0.0.jdb -o shapes-copy
    """
    from ..bundle.archive import unpack_archive
    from ..bundle.pack import MAX_MEMBER_BYTES, MAX_TOTAL_BYTES

    total = max_size if max_size is not None else MAX_TOTAL_BYTES
    root = unpack_archive(archive, out, verify=True, max_total_bytes=total, max_member_bytes=min(total, MAX_MEMBER_BYTES))
    if as_json:
        _echo_json({"path": str(root), "archive": archive})
    else:
        click.echo("unpacked {} -> {} (verified)".format(archive, root))


@bundle.command("add-engine")
@click.argument("bundle_dir", metavar="BUNDLE", type=click.Path())
@click.argument("engine", metavar="ENGINE", type=click.Path(dir_okay=False))
@click.option("--tensorrt", required=True, help="TensorRT version the engine was built with, e.g. 8.6.2.")
@click.option("--sm", required=True, help="GPU compute capability, e.g. 87 (Orin) or 8.7.")
@click.option("--precision", required=True, type=click.Choice(["fp32", "fp16", "int8"]), help="Engine precision.")
@click.option("--jetpack", default=None, help="JetPack version, recorded in the target.")
@click.option("--platform", "platform_name", default=None, help="Platform name (orin, xavier, nano, x86_64), recorded in the target.")
@json_option()
def add_engine(bundle_dir: str, engine: str, tensorrt: str, sm: str, precision: str, jetpack: "Optional[str]",
               platform_name: "Optional[str]", as_json: bool) -> None:
    """Add (or replace) one TensorRT ENGINE in BUNDLE for a target; other artifacts
    and their checksums stay as they are. A signature must be redone afterwards.

    \b
    Example:
      jetson-deploy bundle add-engine shapes-1.0.0 orin.engine --tensorrt 8.6.2 --sm 87 --precision fp16
    """
    from ..bundle.reader import open_bundle
    from ..bundle.writer import add_engine as _add

    was_signed = open_bundle(bundle_dir, verify=False).signed
    target = {"tensorrt": tensorrt, "sm": sm, "precision": precision}
    if jetpack:
        target["jetpack"] = jetpack
    if platform_name:
        target["platform"] = platform_name
    art = _add(bundle_dir, engine, target)
    if as_json:
        _echo_json({"artifact": art, "signature_removed": was_signed})
    else:
        click.echo("added {} ({} bytes, sha256 {}...); other artifacts unchanged".format(art["path"], art["size"], art["sha256"][:12]))


@bundle.command()
@click.argument("bundle_path", metavar="BUNDLE", type=click.Path())
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default=None,
              help="Engine precision (default: the bundle's precision).")
@click.option("--tensorrt", "tensorrt_version", default=None, help="TensorRT version (default: the installed one).")
@click.option("--sm", default=None, help="GPU compute capability, e.g. 87 (default: detected).")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None, help="Engine cache directory (default JETSON_DEPLOY_CACHE or ~/.cache/jetson-deploy/engines).")
@click.option("--build/--no-build", default=True, show_default=True,
              help="Build and cache the engine when neither the bundle nor the cache has one; --no-build only reports (exit 1 if none).")
@click.option("--on", "on_host", metavar="USER@HOST",
              help="Build on this reference board over ssh (its TensorRT and GPU) and add the plan to BUNDLE, so boards "
                   "of that kind download it instead of building it.")
@click.option("--remote-cmd", default="jetson-deploy", show_default=True, metavar="CMD",
              help="--on: how the board starts jetson-deploy (e.g. /home/nvidia/jd/bin/jetson-deploy).")
@click.option("--ssh-config", type=click.Path(exists=True, dir_okay=False), metavar="FILE",
              help="--on: OpenSSH client config (-F FILE) for ssh, rsync and sftp.")
@click.option("-o", "--ssh-option", "ssh_options", multiple=True, metavar="KEY=VALUE",
              help="--on: extra ssh -o option, repeatable (e.g. -o ProxyJump=bastion).")
@key_option()
@json_option()
@click.pass_context
def engine(ctx: "click.Context", bundle_path: str, precision: "Optional[str]", tensorrt_version: "Optional[str]", sm: "Optional[str]",
           cache_dir: "Optional[str]", build: bool, on_host: "Optional[str]", remote_cmd: str, ssh_config: "Optional[str]",
           ssh_options: "Any", key: "Optional[str]", as_json: bool) -> None:
    """Select the TensorRT engine BUNDLE would load on this device (bundled, cached, or
    built now from model.onnx and cached): run it after a deploy so the first start is fast.
    With --on USER@HOST: build it on that board instead and add it to BUNDLE (a directory), so every
    board of that kind downloads the plan instead of building it.

    \b
    Examples:
      jetson-deploy bundle engine /opt/jetson-deploy/active/shapes     # on the board
      jetson-deploy bundle engine shapes-1.0.0 --on nvidia@nano-ref    # on a reference board, into the bundle
    """
    if on_host:
        from .engine_on import engine_on

        return engine_on(bundle_path, on_host, precision, tensorrt_version, sm, cache_dir, build, remote_cmd, ssh_config,
                         ssh_options, as_json)
    from ..bundle.opset import check_tensorrt_compat
    from ..bundle.select import device_target, find_engine, resolve_engine
    from ..bundle.sign import open_trusted

    with open_trusted(bundle_path, key) as b:  # verified (and signature-checked) once, read through its handle
        trt, sm_i = device_target(tensorrt_version, sm)
        check_tensorrt_compat(b, trt)  # one line before any build
        prec = precision or b.precision
        if build:
            path, how = resolve_engine(b, trt, sm_i, prec, cache_dir=cache_dir)
        else:
            path, how = find_engine(b, trt, sm_i, prec, cache_dir=cache_dir)
        path = b.shown(path) if path else None
    out = {"bundle": bundle_path, "tensorrt": trt, "sm": sm_i, "precision": prec, "how": how, "engine": str(path) if path else None}
    if as_json:
        _echo_json(out)
    elif path is None:
        click.echo("no engine for TensorRT {} sm{} {} in the bundle or the cache (run without --no-build to build one)".format(trt, sm_i, prec))
    else:
        click.echo("{}: {} (TensorRT {} sm{} {})".format(how, path, trt, sm_i, prec))
    if path is None:
        ctx.exit(1)


@bundle.command("export")
@click.argument("bundle_path", metavar="BUNDLE", type=click.Path())
@click.option("--format", "fmt", required=True, type=click.Choice(["deepstream", "triton"]),
              help="deepstream: Gst-nvinfer configs + labels + a deepstream-app config; triton: a model repository.")
@click.option("-o", "--output", "out", required=True, type=click.Path(file_okay=False),
              help="New directory to write (replaced only if it is an earlier export).")
@click.option("--source", default=None, help="deepstream: URI, or path on the board (relative: from DIR), the deepstream-app config plays (default: DeepStream's sample clip).")
@click.option("--tensorrt", "tensorrt_version", default=None, help="triton: serve the engines of this TensorRT release (when the bundle has several).")
@click.option("--onnx", "use_onnx", is_flag=True, help="triton: serve model.onnx with ONNX Runtime even when the bundle has engines.")
@json_option()
def export(bundle_path: str, fmt: str, out: str, source: "Optional[str]", tensorrt_version: "Optional[str]", use_onnx: bool,
           as_json: bool) -> None:
    """Write BUNDLE as the config files DeepStream or Triton take, into a new directory
    (the bundle is not changed: a signature stays valid).

    \b
    Examples:
      jetson-deploy bundle export shapes-1.0.0 --format deepstream -o shapes-deepstream
      jetson-deploy bundle export shapes-1.0.0 --format triton -o triton-repo
    """
    from ..bundle.export import export_bundle

    res = export_bundle(bundle_path, fmt, out, source=source, tensorrt=tensorrt_version, use_onnx=use_onnx)
    if as_json:
        _echo_json(res)
        return
    click.echo("wrote {} export of {} {} to {}".format(fmt, res["bundle"]["name"], res["bundle"]["version"], res["path"]))
    for c in res["configs"]:
        click.echo("  {}  {}".format(c["file"], c["use"]))
    for n in res["notes"]:
        click.echo("  note: " + n)


@bundle.group()
def cache() -> None:
    """The on-device engine cache (JETSON_DEPLOY_CACHE, default ~/.cache/jetson-deploy/engines).

    \b
    Examples:
      jetson-deploy bundle cache list
      jetson-deploy bundle cache clear
    """


@cache.command("list")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None, help="Engine cache directory.")
@json_option()
def cache_list(cache_dir: "Optional[str]", as_json: bool) -> None:
    """List cached engines, most recently used first.

    \b
    Example:
      jetson-deploy bundle cache list --json
    """
    from ..bundle.engine_cache import EngineCache
    from ..bundle.report import human_size

    c = EngineCache(cache_dir)
    entries = c.entries()
    if as_json:
        _echo_json({"cache_dir": str(c.root), "max_bytes": c.max_bytes, "total_bytes": c.total_bytes(), "entries": entries})
        return
    click.echo("{}  ({} of {} used)".format(c.root, human_size(c.total_bytes()), human_size(c.max_bytes)))
    for e in entries:
        click.echo("  {}  {:>9}  {}-{}  TensorRT {} sm{} {}".format(
            e["key"][:12], human_size(e.get("size")), e.get("bundle_name", "?"), e.get("bundle_version", "?"),
            e.get("tensorrt", "?"), e.get("sm", "?"), e.get("precision", "?")))


@cache.command("clear")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None, help="Engine cache directory.")
def cache_clear(cache_dir: "Optional[str]") -> None:
    """Remove every cached engine.

    \b
    Example:
      jetson-deploy bundle cache clear --cache-dir /var/cache/jetson-deploy
    """
    from ..bundle.engine_cache import EngineCache

    n = EngineCache(cache_dir).clear()
    click.echo("removed {} cached engines".format(n))
