"""rtm-patch apply|check|revert <checkout> [--target NAME]: our anchored edits in an upstream checkout.

Every error is one line, `Error: <problem>; <what to do>`: exit 2 when the command was pointed at the wrong thing
(no such folder, not a checkout, unknown target), 1 when the checkout's state makes it refuse.
"""

import click

from rtm_plugin import __version__
from rtm_plugin.patching import engine
from rtm_plugin.patching.engine import PatchError, PatchUsageError
from rtm_plugin.patching.spec import Insert, SpecError
from rtm_plugin.patching.targets import known_targets, resolve_target

def _target_option(fn):
    return click.option('--target', metavar='NAME',
                        help='Upstream project [default: detected from the checkout]; see `rtm-patch targets`')(fn)

checkout_argument = click.argument('checkout', type=click.Path(file_okay=True, dir_okay=True))

class PatchUsageException(click.ClickException):
    """A usage error printed as one line (click.UsageError would add the usage text)."""
    exit_code = 2

def _run(fn, *args):
    try:
        return fn(*args)
    except PatchUsageError as err:
        raise PatchUsageException(str(err)) from None
    except (PatchError, SpecError) as err:
        raise click.ClickException(str(err)) from None
    except OSError as err:      # unreadable file, full disk: what the engine did not foresee, still one line
        where = f'{err.filename}: ' if err.filename else ''
        raise click.ClickException(f'{where}{err.strerror or err}; fix that and run again (the engine rolls back '
                                   f'what it wrote; `rtm-patch check` shows the state)') from None

@click.group(context_settings=dict(help_option_names=['-h', '--help']))
@click.version_option(__version__)
def main():
    """Apply, check or revert rtm-plugin's edits in an upstream checkout.

    \b
    rtm-patch apply  ~/stylegan2-ada-pytorch     # all files or none; originals kept in .rtm-patch/
    rtm-patch check  ~/stylegan2-ada-pytorch     # state of every file; exit 1 unless cleanly (un)patched
    rtm-patch revert ~/stylegan2-ada-pytorch     # the original bytes, exactly
    """

@main.command()
@checkout_argument
@_target_option
def apply(checkout, target):
    """Apply the edits (a no-op when already applied)."""
    outcome = _run(lambda: engine.apply(checkout, resolve_target(checkout, target)))
    click.echo(outcome.message)

@main.command()
@checkout_argument
@_target_option
@click.option('-v', '--verbose', is_flag=True, help='Also list every edit and why it is there.')
def check(checkout, target, verbose):
    """Report the state of every file the edits touch."""
    tgt = _run(resolve_target, checkout, target)
    report = _run(engine.check, checkout, tgt)
    click.echo(report.summary())
    if verbose:
        for change in tgt.changes:
            click.echo(f'{change.path}:')
            for edit in getattr(change, 'edits', [change]):
                kind = ('insert after' if edit.after else 'insert before') if isinstance(edit, Insert) else \
                       type(edit).__name__.lower()
                click.echo(f'  {kind:<13}  {edit.why}')
    if report.state not in ('patched', 'unpatched'):
        raise SystemExit(1)

@main.command()
@checkout_argument
@_target_option
def revert(checkout, target):
    """Restore the original bytes and modes of every changed file."""
    outcome = _run(lambda: engine.revert(checkout, None if target is None else resolve_target(checkout, target)))
    click.echo(outcome.message)

@main.command()
def targets():
    """List the upstream projects rtm-patch knows."""
    for name, path in _run(known_targets).items():
        click.echo(f'{name}  ({path})')
