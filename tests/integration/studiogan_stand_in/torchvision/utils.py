"""Stand-in: StudioGAN imports save_image at module level; the tests never call it."""

def save_image(*args, **kwargs):
    raise RuntimeError('save_image: a stand-in (tests/integration/studiogan_stand_in); install a torchvision that '
                       'matches your torch')
