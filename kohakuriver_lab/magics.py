"""The ``%kohaku`` line/cell magic (``%load_ext kohakuriver_lab``).

Subcommands share one :class:`~IPython.core.magic_arguments.MagicArgumentParser` with
subparsers, so every mistake is a :class:`~IPython.core.error.UsageError` with argparse's
message and ``%kohaku?`` shows the help of every subcommand. State (the cluster connection)
lives on the :class:`KohakuMagics` instance, created on first use from ``KOHAKURIVER_URL`` /
``KOHAKURIVER_TOKEN``.
"""

from __future__ import annotations

import argparse
import ast
import shlex
from typing import Any, NoReturn

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import MagicArgumentParser

from kohakuriver_lab.errors import KohakuRiverError

__all__ = ["KohakuMagics", "load_ipython_extension", "unload_ipython_extension"]


class _HelpShown(Exception):
    """argparse printed ``-h`` help; stop without an error."""


class _Parser(MagicArgumentParser):  # type: ignore[misc]
    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            raise UsageError(message.strip())
        raise _HelpShown

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}\n{self.format_usage().strip()}")


def _resource_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-t",
        "--target",
        action="append",
        default=None,
        metavar="TARGET",
        help="node, node:numa or node::gpu,gpu (repeatable: one task per target)",
    )
    p.add_argument("-c", "--cores", type=int, default=None, help="CPU cores to reserve")
    p.add_argument("-m", "--memory", default=None, help="memory limit, e.g. 8G or 512M")
    p.add_argument("-g", "--gpus", default=None, help="GPU count (2) or indices (0,1)")
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--env",
        dest="env_name",
        default=None,
        metavar="NAME",
        help="container environment NAME or NAME:TAG (docker backend; see /environments)",
    )
    group.add_argument("--image", default=None, metavar="IMG", help="container image to run in")
    p.add_argument(
        "-e",
        "--setenv",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help="environment variable for the task (repeatable)",
    )
    p.add_argument("--name", default=None, help="task name")
    p.add_argument("--priority", type=int, default=None, help="higher runs first (-1000..1000)")
    p.add_argument("--workdir", default=None, help="absolute working directory on the node")  # fmt: skip


def _build_parser() -> Any:
    make: Any = _Parser
    parser = make(
        prog="%kohaku",
        description="Run work on the kohakuriver cluster from a notebook.",
        add_help=False,
    )
    sub = parser.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    sub.required = True

    s = sub.add_parser(
        "submit",
        help="run a command (line magic) or the cell (cell magic) on the cluster",
        description="%kohaku submit [options] -- CMD ARGS...   or   %%kohaku submit [options] "
        "(the cell runs as a Python script, or bash with --shell). Returns a task handle that "
        "displays as a live widget.",
    )
    _resource_args(s)
    mode = s.add_mutually_exclusive_group()
    mode.add_argument("--block", action="store_true", help="wait until the task ends")
    mode.add_argument("--noblock", action="store_true", help="return at once (default)")
    mode.add_argument("--follow", "--stream", action="store_true",
                      help="stream stdout/stderr into the cell output until the task ends")  # fmt: skip
    s.add_argument("--shell", action="store_true", help="cell magic: run the cell with bash")
    s.add_argument("--python", default=None, help="cell magic: the interpreter (default python3)")
    s.add_argument("command", nargs=argparse.REMAINDER, help="the command (after --)")

    r = sub.add_parser(
        "run",
        help="run a notebook as a papermill job (or a sweep of them)",
        description="%kohaku run NOTEBOOK [-p NAME VALUE]... [--sweep NAME=V1,V2,...]... "
        "[resources]. Values are Python literals when they parse as one, else strings. "
        "A sweep creates one task per combination, in one batch.",
    )
    r.add_argument("notebook", help="path of the .ipynb to run")
    r.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                   metavar=("NAME", "VALUE"), help="a parameter (repeatable)")  # fmt: skip
    r.add_argument("--sweep", action="append", default=[], metavar="NAME=V1,V2",
                   help="sweep a parameter over values (repeatable: the product)")  # fmt: skip
    r.add_argument("--block", action="store_true", help="wait until every task ends")
    _resource_args(r)

    st = sub.add_parser("status", help="a task's state, or the cluster summary without ID")
    st.add_argument("id", nargs="?", default=None)
    ts = sub.add_parser("tasks", help="list recent tasks")
    ts.add_argument("--mine", action="store_true", help="only my tasks")
    ts.add_argument("--status", default=None, help="filter by status (comma-separated)")
    ts.add_argument("-n", "--limit", type=int, default=20)
    lg = sub.add_parser("logs", help="a task's output (stored, or live with --follow)")
    lg.add_argument("id")
    lg.add_argument("-f", "--follow", action="store_true", help="stream until the task ends")
    lg.add_argument("--stderr", action="store_true", help="show stderr instead of stdout")
    kl = sub.add_parser("kill", help="kill tasks")
    kl.add_argument("ids", nargs="+", metavar="ID")
    wt = sub.add_parser("wait", help="wait until tasks end")
    wt.add_argument("ids", nargs="+", metavar="ID")
    wt.add_argument("--timeout", type=float, default=None, help="seconds")
    sub.add_parser("nodes", help="the nodes with live CPU/memory/GPU bars")
    rs = sub.add_parser("result", help="what a task recorded with kohakuriver_lab.glue")
    rs.add_argument("id")
    rs.add_argument("name", nargs="?", default=None)
    parser._subparsers_by_name = sub.choices
    return parser


PARSER: Any = _build_parser()


def _full_help() -> str:
    parts = [
        "%kohaku ACTION [options]: run work on the kohakuriver cluster.\n",
        "Actions: submit, run, status, tasks, logs, kill, wait, nodes, result.",
        "The host comes from KOHAKURIVER_URL / KOHAKURIVER_TOKEN (exported by the host into",
        "kernels it starts) or ~/.config/kohakuriver/client.json.\n",
        "Examples::\n",
        "    %kohaku submit -g 1 -m 8G -- python train.py --lr 0.1",
        "    %%kohaku submit --follow -c 2",
        "    %kohaku run train.ipynb -p lr 0.1 --sweep seed=0,1,2",
        "    %kohaku logs 1234 --follow",
        "    %kohaku result 1234\n",
    ]
    for name, sub in PARSER._subparsers_by_name.items():
        parts.append("-" * 72)
        parts.append(f"%kohaku {name}\n")
        parts.append(sub.format_help().replace("usage: ", "usage: ", 1))
    return "\n".join(parts)


def parse_line(line: str) -> argparse.Namespace:
    """Parse a ``%kohaku`` line: POSIX shell quoting; everything after ``--`` is the command."""
    try:
        tokens = shlex.split(line)
    except ValueError as exc:
        raise UsageError(f"%kohaku: cannot split the line ({exc}); check the quotes") from None
    command: list[str] | None = None
    if "--" in tokens:
        at = tokens.index("--")
        tokens, command = tokens[:at], tokens[at + 1 :]
    args: argparse.Namespace = PARSER.parse_args(tokens)
    if command is not None:
        if args.action != "submit":
            raise UsageError(f"%kohaku {args.action} takes no command after --")
        args.command = list(args.command) + command
    return args


def parse_value(text: str) -> Any:
    """A parameter value: a Python literal if it parses as one (1, 0.1, True, [1, 2], 'a'),
    else the string itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _sweep_grid(specs: list[str]) -> dict[str, list[Any]]:
    grid: dict[str, list[Any]] = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        if not sep or not name.strip() or not values.strip():
            raise UsageError(f"--sweep takes NAME=V1,V2,...; got {spec!r}")
        grid[name.strip()] = [parse_value(v.strip()) for v in values.split(",")]
    return grid


def _gpus(text: str | None) -> int | list[int] | None:
    if text is None:
        return None
    try:
        if "," in text:
            return [int(g) for g in text.split(",") if g.strip()]
        return int(text)
    except ValueError:
        raise UsageError(f"-g/--gpus takes a count (2) or indices (0,1); got {text!r}") from None


def _env(items: list[str] | None) -> dict[str, str] | None:
    if not items:
        return None
    env = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"-e/--setenv takes KEY=VALUE; got {item!r}")
        env[key] = value
    return env


def _resources(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "name": args.name,
        "cores": args.cores,
        "memory": args.memory,
        "gpus": _gpus(args.gpus),
        "targets": args.target,
        "env": _env(args.setenv),
        "image": args.image,
        "environment": args.env_name,
        "workdir": args.workdir,
        "priority": args.priority,
    }


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


@magics_class
class KohakuMagics(Magics):  # type: ignore[misc]
    """``%kohaku`` / ``%%kohaku``; bound to one :class:`~kohakuriver_lab.cluster.Cluster`."""

    def __init__(self, shell: Any = None, cluster: Any = None) -> None:
        super().__init__(shell)
        self._cluster = cluster

    @property
    def cluster(self) -> Any:
        if self._cluster is None:
            from kohakuriver_lab.cluster import Cluster

            try:
                self._cluster = Cluster()
            except KohakuRiverError as exc:
                raise UsageError(str(exc)) from None
        return self._cluster

    @line_cell_magic
    def kohaku(self, line: str, cell: str | None = None) -> Any:
        try:
            args = parse_line(line)
        except _HelpShown:
            return None
        handler = getattr(self, f"_do_{args.action}")
        try:
            return handler(args, cell)
        except UsageError:
            raise
        except KohakuRiverError as exc:
            raise UsageError(f"%kohaku {args.action}: {exc}") from None
        except KeyboardInterrupt:
            print("interrupted (the task keeps running; %kohaku kill ID stops it)")
            return None

    kohaku.__doc__ = _full_help()

    # ----- actions -----

    def _do_submit(self, args: argparse.Namespace, cell: str | None) -> Any:
        command = list(args.command)
        resources = _resources(args)
        if cell is not None:
            if command:
                raise UsageError(
                    "%%kohaku submit runs the cell; do not give a command after it "
                    f"(got {shlex.join(command)!r})"
                )
            task = self.cluster.submit_code(cell, shell=args.shell, python=args.python, **resources)
        else:
            if not command:
                raise UsageError(
                    "%kohaku submit needs a command: %kohaku submit [options] -- CMD ARGS... "
                    "(or use %%kohaku submit to run the cell)"
                )
            if args.shell:
                task = self.cluster.submit(shlex.join(command), shell=True, **resources)
            else:
                task = self.cluster.submit(command, **resources)
        if args.follow:
            task.stream()
            task.refresh()
            return task
        if args.block:
            task.wait()
        return task

    def _do_run(self, args: argparse.Namespace, cell: str | None) -> Any:
        parameters = {name: parse_value(value) for name, value in args.parameter}
        grid = _sweep_grid(args.sweep)
        resources = _resources(args)
        if grid:
            sets = [{**parameters, **combo} for combo in _product(grid)]
            result = self.cluster.sweep(args.notebook, parameter_sets=sets, **resources)
        else:
            result = self.cluster.run_notebook(args.notebook, parameters, **resources)
        if args.block:
            result.wait()
        return result

    def _do_status(self, args: argparse.Namespace, cell: str | None) -> Any:
        if args.id is None:
            nodes = self.cluster.nodes()
            online = sum(1 for n in nodes if n.status.value == "online")
            print(f"{self.cluster.client.url}: {online}/{len(nodes)} nodes online")
            rows = [[t.task_id.__str__(), t.status.value, t.name or "", t.node or ""]
                    for t in self.cluster.tasks(limit=10)]  # fmt: skip
            print(_table(rows, ["task", "status", "name", "node"]))
            return None
        return self.cluster.task(_id(args.id))

    def _do_tasks(self, args: argparse.Namespace, cell: str | None) -> None:
        infos = self.cluster.tasks(mine=args.mine, status=args.status, limit=args.limit)
        rows = [
            [str(t.task_id), t.status.value, t.name or "", t.owner, t.node or "",
             " ".join(t.command).replace("\n", " ")[:40]]
            for t in infos
        ]  # fmt: skip
        print(_table(rows, ["task", "status", "name", "owner", "node", "command"]))

    def _do_logs(self, args: argparse.Namespace, cell: str | None) -> None:
        task = self.cluster.task(_id(args.id))
        if args.follow:
            task.stream()
        else:
            text = task.logs("stderr" if args.stderr else "stdout")
            print(text, end="" if text.endswith("\n") or not text else "\n")

    def _do_kill(self, args: argparse.Namespace, cell: str | None) -> None:
        for ident in args.ids:
            info = self.cluster.task(_id(ident)).kill()
            print(f"task {info.task_id}: kill requested ({info.status.value})")

    def _do_wait(self, args: argparse.Namespace, cell: str | None) -> None:
        for ident in args.ids:
            info = self.cluster.task(_id(ident)).wait(args.timeout)
            reason = f" ({info.reason})" if info.reason else ""
            print(f"task {info.task_id}: {info.status.value}{reason}")

    def _do_nodes(self, args: argparse.Namespace, cell: str | None) -> Any:
        if getattr(self.shell, "kernel", None) is not None:
            return self.cluster.widget()
        rows = [[n.name, n.status.value, str(len(n.cores)), str(len(n.gpus))]
                for n in self.cluster.nodes()]  # fmt: skip
        print(_table(rows, ["node", "status", "cores", "gpus"]))
        return None

    def _do_result(self, args: argparse.Namespace, cell: str | None) -> Any:
        task = self.cluster.task(_id(args.id))
        try:
            return task.result(args.name)
        except KeyError as exc:
            raise UsageError(str(exc.args[0])) from None


def _id(text: str) -> int:
    if not text.isdigit():
        raise UsageError(f"a task ID is a number, got {text!r}")
    return int(text)


def _product(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    from kohakuriver_lab.cluster import grid_sets

    return grid_sets(grid)


def load_ipython_extension(ipython: Any) -> None:
    """Register the magics on ``ipython``."""
    ipython.register_magics(KohakuMagics)


def unload_ipython_extension(ipython: Any) -> None:
    """Close the shared events socket."""
    from kohakuriver_lab._events import close_hubs

    close_hubs()
