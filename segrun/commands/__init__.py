"""The commands of the segrun command line, one module per command group, each holding its
arguments beside its handler. segrun.cli lists them and dispatches."""
import argparse
from collections.abc import Callable, Mapping, Sequence

import attrs


@attrs.frozen
class Command:
    """One command or subcommand: what its --help says, the arguments it takes, and what runs it."""

    help: str  # its line in the parent's list of commands
    description: str  # the text under the usage line of its own --help
    arguments: Callable[[argparse.ArgumentParser], None] | None = None  # adds its arguments to its parser
    handler: Callable[[argparse.Namespace], None] | None = None  # None for a group of subcommands
    subcommands: Mapping[str, "Command"] = attrs.field(factory=dict)
    metavar: str | None = None  # a group's placeholder for its subcommand in usage lines (ACTION, WHAT)

    def add_to(self, commands: argparse._SubParsersAction, name: str, argv: Sequence[str]) -> None:
        """Add this command's parser as `name`. It gets its arguments and subcommands only when argv (the
        command line from this level on) names it: some commands take their choices from registries whose
        import, torch included, `segrun --help` and the other commands' help should not wait for."""
        parser = commands.add_parser(name, help=self.help, description=self.description)
        if not argv or argv[0] != name:
            return
        if self.handler is not None:
            parser.set_defaults(handler=self.handler)
        if self.arguments is not None:
            self.arguments(parser)
        if self.subcommands:
            subcommands = parser.add_subparsers(metavar=self.metavar, required=True)
            for subname, subcommand in self.subcommands.items():
                subcommand.add_to(subcommands, subname, argv[1:])
