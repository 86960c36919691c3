"""python -m rtm_plugin.imle: the same as the rtm-imle console script."""

from rtm_plugin.imle.cli import main

if __name__ == '__main__':
    main()
