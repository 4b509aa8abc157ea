"""User-facing errors: one or two lines on stderr, exit code 2 for usage errors and 1 for failures.

:func:`run` wraps the Typer application: a :class:`CliError` or a known failure (database
unreachable or malformed URL, a folder that cannot be written) becomes a short message; any
other exception a one-line summary, with the traceback only under ``--verbose``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import typer

USAGE = 2
FAILURE = 1

# Typer ships its own copy of click: its exception classes, found through the public ones.
_ClickException = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
_UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


def _echo(line: str) -> None:
    print(line, file=sys.stderr)


class CliError(_ClickException):
    """A problem the user can fix: ``message`` names it, ``hint`` the way out.

    A click exception, so that Typer itself (e.g. its test runner) also exits with ``exit_code``.
    """

    def __init__(self, message: str, hint: str | None = None, exit_code: int = FAILURE):
        super().__init__(message)
        self.hint = hint
        self.exit_code = exit_code

    def format_message(self) -> str:
        return self.message + (f" ({self.hint})" if self.hint else "")

    def lines(self) -> list[str]:
        return [f"nowcast: {self.message}"] + ([f"  {self.hint}"] if self.hint else [])


def usage_error(message: str, hint: str | None = None) -> CliError:
    return CliError(message, hint, USAGE)


def _database_target(url: str) -> str:
    """``host:port/db`` of a database URL, without the password."""
    from sqlalchemy.engine import make_url

    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        return f"SQLite file {u.database}"
    return f"{u.host or 'localhost'}:{u.port or 5432}/{u.database or ''}"


def translate(exc: BaseException, database_url: Callable[[], str | None]) -> CliError | None:
    """A :class:`CliError` for failures with a known cause and remedy, else None."""
    from sqlalchemy import exc as sa_exc

    from nowcast_core.db.migrate import SchemaError

    if isinstance(exc, CliError):
        return exc
    if isinstance(exc, SchemaError):
        return CliError(str(exc), exc.hint)
    if isinstance(exc, (sa_exc.ArgumentError, sa_exc.NoSuchModuleError)):
        return CliError(f"the database URL {database_url()!r} is not valid: {str(exc).splitlines()[0]}",
                        "set NOWCAST_DATABASE_URL to e.g. postgresql://user@host:5432/nowcast (or unset it for SQLite)",
                        USAGE)
    if isinstance(exc, sa_exc.OperationalError):
        url = database_url()
        target = _database_target(url) if url else "the database"
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0][:200]
        return CliError(f"cannot reach the database at {target}: {reason}",
                        "start it, or point NOWCAST_DATABASE_URL at a reachable server")
    if isinstance(exc, PermissionError):
        return CliError(f"permission denied: {exc.filename or exc}", "use a folder you can write (NOWCAST_HOME)")
    if isinstance(exc, OSError) and exc.filename:
        return CliError(f"{exc.strerror or exc}: {exc.filename}")
    return None


def run(app, argv: list[str] | None = None) -> int:
    """Run the Typer ``app``; returns the exit code (never raises for a user's mistake)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in argv or "-v" in argv

    def database_url() -> str | None:
        try:
            from nowcast_core.config import load_settings

            return load_settings().database_url
        except Exception:
            return None

    try:
        result = app(args=argv, prog_name="nowcast", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except CliError as exc:
        for line in exc.lines():
            _echo(line)
        return exc.exit_code
    except _UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # `nowcast` or `nowcast db` alone: the help
            _echo(exc.ctx.get_help() if exc.ctx else str(exc))
            return USAGE
        command = exc.ctx.command_path if exc.ctx else "nowcast"
        _echo(f"nowcast: {exc.format_message().replace('Value error, ', '')}")  # validator's prefix: noise here
        _echo(f"  see '{command} --help'")
        return USAGE
    except _ClickException as exc:
        _echo(f"nowcast: {exc.format_message()}")
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        _echo("nowcast: interrupted")
        return 130
    except Exception as exc:  # the last line of defence: a summary, the traceback only when asked
        if verbose:
            raise
        known = translate(exc, database_url)
        lines = known.lines() if known else [f"nowcast: unexpected {type(exc).__name__}: {str(exc)[:300]}",
                                             "  run again with --verbose for the traceback"]
        for line in lines:
            _echo(line)
        return known.exit_code if known else FAILURE
