"""The `agentwatch` command line. Thin: parse, call the library, turn errors into messages."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from collector.sinks import SinkError
from probes.kernel import SetupError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Runtime monitor for sandboxed AI agents (eBPF).")


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"agentwatch: {message}", err=True)
    return typer.Exit(code)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def run(
    command: Annotated[list[str] | None, typer.Argument(help="CMD [ARGS...] after --")] = None,
    events: Annotated[str | None, typer.Option(
        "--events", metavar="FILE|-",
        help="Write events as JSON Lines to FILE (- = stdout).")] = None,
    ebpf: Annotated[bool, typer.Option("--ebpf", hidden=True,
                                       help="Print the BPF C program and exit.")] = False,
) -> None:
    """Run CMD as a watched session; exit with CMD's status (128+N if killed by signal N)."""
    from probes import loader

    if ebpf:
        typer.echo(loader.source())
        raise typer.Exit(0)
    from collector import run as runmod

    try:
        code = runmod.main(list(command or []), events)
    except runmod.RunError as e:
        raise _fail(str(e), e.code) from None
    except (SetupError, SinkError) as e:
        raise _fail(str(e), 1) from None
    raise typer.Exit(code)


@app.command()
def daemon(
    events: Annotated[str | None, typer.Option(
        "--events", metavar="FILE|-",
        help="Write events as JSON Lines to FILE (- = stdout).")] = None,
    launcher: Annotated[list[str] | None, typer.Option(
        "--launcher", metavar="COMM",
        help="Sandbox launcher command name to adopt (repeatable; default: bwrap).")] = None,
) -> None:
    """Watch every sandbox on the host: each exec of a launcher starts a session."""
    from collector import daemon as d
    from collector.runtime import DEFAULT_LAUNCHERS, SessionError

    try:
        code = d.daemon(events, launcher or list(DEFAULT_LAUNCHERS))
    except (SetupError, SinkError, SessionError) as e:
        raise _fail(str(e), 1) from None
    raise typer.Exit(code)


@app.command()
def attach(
    pid: Annotated[int, typer.Argument(help="Root of the running tree to adopt.")],
    events: Annotated[str | None, typer.Option(
        "--events", metavar="FILE|-",
        help="Write events as JSON Lines to FILE (- = stdout).")] = None,
) -> None:
    """Adopt a running process tree as a session; runs until the tree is gone."""
    from collector import daemon as d
    from collector.runtime import SessionError

    try:
        code = d.attach(pid, events)
    except (SetupError, SinkError, SessionError) as e:
        raise _fail(str(e), 1) from None
    raise typer.Exit(code)


@app.command()
def doctor(
    json_output: Annotated[bool, typer.Option("--json", help="One JSON list.")] = False,
) -> None:
    """Check, by trying each, what this host's kernel lets agentwatch do."""
    from collector import doctor as doc

    raise typer.Exit(doc.main(json_output=json_output))


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
