"""rtm-patch: our own anchored edits for upstream checkouts (StyleGAN2-ADA, StudioGAN), applied all or nothing.

A target is a folder patches/<name>/ holding target.py, which defines TARGET = Target(...) out of Insert, Replace,
FilePatch, AddFile and ComposeYAML (rtm_plugin.patching.spec). The engine (rtm_plugin.patching.engine) applies,
checks and reverts it; rtm_plugin.patching.cli is the `rtm-patch` command.
"""

from rtm_plugin.patching.spec import MARKER, AddFile, ComposeYAML, FilePatch, Insert, Replace, SpecError, Target
from rtm_plugin.patching.engine import PatchError, apply, check, revert, render
from rtm_plugin.patching.targets import known_targets, load_target, resolve_target
