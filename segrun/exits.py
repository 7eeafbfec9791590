"""How a command ends: a user error prints one line and exits with status 2; a stop on a
scheduler's signal prints one line and exits with the status segrun.runner gives it; Ctrl-C prints
one line and exits with status 130."""
import sys

from segrun.errors import Stopped, UserError
def run_as_command(function, *args, **kwargs) -> int:
    """Call function(*args, **kwargs) as the command line does: a user error, a stop on a signal and
    Ctrl-C each end as one line on stderr; returns the exit status (0 when it returned)."""
    try:
        function(*args, **kwargs)
    except UserError as error:
        print(f"segrun: error: {error}", file=sys.stderr)
        return 2
    except Stopped as stopped:  # a scheduler's signal; training has written its checkpoint by now
        if str(stopped):
            print(f"segrun: {stopped}", file=sys.stderr)
        return stopped.exit_status
    except KeyboardInterrupt as interruption:  # Ctrl-C; training has written its checkpoint by now
        print(f"segrun: interrupted{f': {interruption}' if str(interruption) else ''}", file=sys.stderr)
        return 130
    return 0
