from rtm_plugin.analysis.cli import main

main()  # pylint: disable=no-value-for-parameter
