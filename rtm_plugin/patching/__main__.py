from rtm_plugin.patching.cli import main

main(prog_name='rtm-patch')  # pylint: disable=no-value-for-parameter
