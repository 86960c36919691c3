"""Stand-in: StudioGAN's utils/misc.py imports this module; the tests use none of it."""
