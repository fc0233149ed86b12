"""``edgevcf keys new`` and ``edgevcf sign``: the site's key and the bundles it releases; the
``--trust`` / ``--revoked`` options the cart-side commands share."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from edgevcf.cli import echo
from edgevcf.errors import ConfigError

if TYPE_CHECKING:
    from edgevcf.signing import Trust


def trust_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--trust KEY.pub|FOLDER`` (repeatable) and ``--revoked KEYID`` (repeatable)."""
    f = click.option(
        "--revoked",
        multiple=True,
        metavar="KEYID",
        help="A key id no longer trusted, even if its key is listed (repeatable).",
    )(f)
    return click.option(
        "--trust",
        multiple=True,
        type=click.Path(exists=True, path_type=Path),
        metavar="KEY.pub|DIR",
        help="Run only bundles signed by this public key (or any *.pub in DIR); repeatable, "
        "for key rotation. Without it, origin is not checked.",
    )(f)


def load_trust(trust: tuple[Path, ...], revoked: tuple[str, ...]) -> Trust | None:
    """The trust list the options name, or None (origin not checked)."""
    if not trust:
        if revoked:
            raise ConfigError("--revoked needs --trust", hint="name the trusted keys too")
        return None
    from edgevcf.signing import Trust

    return Trust.load(list(trust), revoked)


def passphrase_from_env(env: str | None) -> str | None:
    """The passphrase from environment variable ``env`` (never from the command line)."""
    if env is None:
        return None
    value = os.environ.get(env)
    if value is None:
        raise ConfigError(f"environment variable {env} is not set", hint=f"export {env}=...")
    if not value:
        raise ConfigError(f"environment variable {env} is empty")
    return value


PASS_HELP = "Read the key's passphrase from this environment variable (never pass it inline)."


@click.group("keys")
def keys() -> None:
    """The site's signing keys (ECDSA P-256, the OpenSSF model-signing format)."""


@keys.command("new")
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Private key file to write (mode 0600); the public key goes to OUT.pub.",
)
@click.option("--passphrase-env", metavar="VAR", help=PASS_HELP)
def keys_new(out: Path, passphrase_env: str | None) -> None:
    """Make a signing key pair and print its key id (SHA-256 of the public key).

    Keep the private key on the workstation that releases bundles (with a passphrase); copy the
    .pub file to every cart (`--trust KEY.pub`, or the serve config's [trust] keys).

    \b
    Example:
      EDGEVCF_KEY_PASS=... edgevcf keys new --out site-2026 --passphrase-env EDGEVCF_KEY_PASS
    """
    from edgevcf.signing import new_key

    private, public, kid = new_key(out, passphrase_from_env(passphrase_env))
    echo(f"private key: {private} (mode 0600{', passphrase-protected' if passphrase_env else ''})")
    echo(f"public key:  {public}")
    echo(f"key id:      {kid}")


@click.command("sign")
@click.argument("bundle", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--key", "key", required=True, type=click.Path(dir_okay=False, exists=True,
              path_type=Path), help="The private key (from `edgevcf keys new`).")  # fmt: skip
@click.option("--passphrase-env", metavar="VAR", help=PASS_HELP)
def sign(bundle: Path, key: Path, passphrase_env: str | None) -> None:
    """Sign a bundle: writes BUNDLE/model.sig over every exported file, changes no other byte.

    The bundle is verified first (a damaged bundle is never signed). `model_signing verify key`
    (OpenSSF) verifies the result too. Given BUNDLE/device, signs the engine a device built
    from the bundle instead, with the device's key (BUNDLE/device/model.sig).

    \b
    Examples:
      edgevcf sign bundles/openvino-int8 --key site-2026 --passphrase-env EDGEVCF_KEY_PASS
      edgevcf sign bundles/jetson-int8/device --key device-key
    """
    from edgevcf.bundle import DEVICE_DIR, MANIFEST, Bundle, DeviceBuild
    from edgevcf.signing import sign_bundle

    passphrase = passphrase_from_env(passphrase_env)
    if bundle.name == DEVICE_DIR and (bundle.parent / MANIFEST).is_file():
        DeviceBuild.load(Bundle.load(bundle.parent, device=False))
    else:
        Bundle.load(bundle)
    kid = sign_bundle(bundle, key, passphrase)
    echo(f"signed {bundle} with key {kid}")
