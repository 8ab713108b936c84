"""Saving an IBM Quantum account into Qiskit's own accounts file, readable by its owner only."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import BackendError


def accounts_file(filename: str | os.PathLike | None = None) -> Path:
    """The accounts file ``save_account`` writes: ``filename``, else Qiskit's default."""
    if filename:
        return Path(filename).expanduser()
    from qiskit_ibm_runtime.accounts.management import _DEFAULT_ACCOUNT_CONFIG_JSON_FILE

    return Path(_DEFAULT_ACCOUNT_CONFIG_JSON_FILE).expanduser()


def default_account(path: Path) -> str | None:
    """The name of the default account saved in ``path`` (None when there is none)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return next((k for k, v in data.items() if isinstance(v, dict) and v.get("is_default_account")),
                None)


def save_account(token: str, *, channel: str = "ibm_quantum_platform", instance: str | None = None,
                 name: str | None = None, overwrite: bool = False,
                 filename: str | os.PathLike | None = None) -> str:
    """Save ``token`` with ``QiskitRuntimeService.save_account`` and return a line saying what
    was saved. Without ``name`` (or when no default exists yet) the account becomes the default
    that ``ibm_<device>`` backends use; a named account beside an existing default is saved as
    well, and the default stays. The file and a folder made for it are its owner's only (0600,
    0700): the token never lies in a file others can read. The token never appears in an error.
    """
    from qiskit_ibm_runtime import QiskitRuntimeService

    path = accounts_file(filename)
    current = default_account(path)
    as_default = name is None or current is None or current == name or overwrite
    umask = os.umask(0o077)  # whatever save_account creates is its owner's only
    try:
        QiskitRuntimeService.save_account(token=token.strip(), channel=channel, instance=instance,
                                          name=name, overwrite=overwrite, filename=str(path),
                                          set_as_default=as_default)
    except Exception as err:  # noqa: BLE001 - never print the token: only the error's first line
        if type(err).__name__ == "AccountAlreadyExistsError":
            raise BackendError(f"could not save the account: {path} already holds "
                               f"{'account ' + repr(name) if name else 'a default account'}; "
                               "pass --overwrite to replace it") from None
        msg = str(err).replace(token, "***").splitlines()[0] if str(err) else ""
        raise BackendError(f"could not save the account: {type(err).__name__}"
                           f"{': ' + msg if msg else ''}") from None
    finally:
        os.umask(umask)
    path.chmod(0o600)  # a file an earlier version wrote 0644
    what = f"account {name!r}" if name else "account"
    if as_default:
        return f"{what} saved as the default in {path}"
    return f"{what} saved in {path}; the default account stays {current!r} (use --overwrite " \
           "to make this one the default)"
