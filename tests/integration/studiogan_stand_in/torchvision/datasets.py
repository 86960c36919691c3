"""Stand-in: StudioGAN imports these at module level; the tests never call them."""

class _NotHere:
    def __init__(self, *args, **kwargs):
        raise RuntimeError(f'{type(self).__name__}: a stand-in (tests/integration/studiogan_stand_in); '
                           f'install a torchvision that matches your torch')

class CIFAR10(_NotHere):
    pass

class CIFAR100(_NotHere):
    pass
