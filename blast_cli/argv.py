"""A plain option given twice is an error, not the last one winning.

click keeps the last value of a repeated plain option without a word, so
`blast run-ladder --seeds 5 --seeds 2` would run 2 seeds and `blast run --env minigrid:video
--env minigrid:unmodified` the unmodified env. Repeatable options (`--set`, `--env` of
run-ladder, `--rung` of bench) are left alone.
"""

from __future__ import annotations

from typing import Any


def _command(group: Any, args: list[str]) -> tuple[Any, list[str]]:
    """The (sub)command `args` name and the arguments left for it. blast's groups have no
    option that takes a value, so their first word that is not an option is the command."""
    cmd = group
    while hasattr(cmd, "commands"):
        words = [i for i, a in enumerate(args) if not a.startswith("-")]
        if not words or args[words[0]] not in cmd.commands:
            return None, []  # click reports the missing or unknown command itself
        cmd, args = cmd.commands[args[words[0]]], args[words[0] + 1:]
    return cmd, args


def repeated_option(group: Any, args: list[str]) -> str | None:
    """What is wrong, for an error line, if `args` give an option of their command that takes
    one value twice (`--seed 1 --seed 2`, `--env=a -e b`); None when nothing is. A repeated
    flag changes nothing, so it passes."""
    cmd, args = _command(group, args)
    if cmd is None:
        return None
    options = {name: p for p in cmd.params if p.param_type_name == "option"
               for name in (*p.opts, *p.secondary_opts)}
    seen: dict[str, tuple[str, str | None]] = {}
    i = 0
    while i < len(args):
        word, i = args[i], i + 1
        if word == "--":
            break
        name, eq, value = word.partition("=")
        p = options.get(name) if word.startswith("-") else None
        if p is None and word.startswith("-") and not word.startswith("--") and len(word) > 2:
            name, eq, value = word[:2], "=", word[2:]  # -s8: a short option and its value
            p = options.get(name)
        if p is None:
            continue
        takes_value = not p.is_flag and not p.count
        if takes_value and not eq:
            value, i = (args[i] if i < len(args) else None), i + p.nargs
        if not takes_value or p.multiple:
            continue
        if p.name in seen:
            first, before = seen[p.name]
            return f"{first} is given twice ({before}, then {value}); it takes one value"
        seen[p.name] = (name, value)
    return None
