"""Options every registry command takes (``publish``, ``agent``, ``fleet status``), as one decorator."""
import click

from ..deploy.oci_auth import PASSWORD_ENV


def registry_options(fn):
    """--ca-cert, --insecure, --username, --docker-config, --registry-timeout."""
    opts = [
        click.option("--ca-cert", type=click.Path(dir_okay=False), metavar="FILE",
                     help="PEM CA that signed the registry's TLS certificate (trusted besides the system's CAs)."),
        click.option("--insecure", is_flag=True,
                     help="Plain HTTP instead of TLS; refused unless the registry is on this machine (127.0.0.1, ::1, localhost)."),
        click.option("--username", metavar="USER",
                     help="Registry user; the password comes from ${} (default: the Docker config's "
                          "credentials for the host).".format(PASSWORD_ENV)),
        click.option("--docker-config", type=click.Path(file_okay=False), metavar="DIR",
                     help="Directory holding the Docker client config.json (default: $DOCKER_CONFIG or ~/.docker)."),
        click.option("--registry-timeout", type=click.FloatRange(1, 3600), default=30.0, show_default=True, metavar="S",
                     help="Seconds to wait for the registry on each connection and read."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def registry_from(values: dict):
    """The RegistryOptions of the values registry_options parsed (popped from VALUES)."""
    from ..deploy.oci import RegistryOptions

    return RegistryOptions(ca_cert=values.pop("ca_cert"), insecure=values.pop("insecure"), username=values.pop("username"),
                           docker_config=values.pop("docker_config"), timeout=values.pop("registry_timeout"))
