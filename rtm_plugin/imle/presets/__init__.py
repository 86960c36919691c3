"""Named RS-IMLE setups (--preset), one YAML file each beside this module, every value with its source:

- cifar10, celebahq, fewshot: the paper's setups (App. C decoders, App. F Adam, the paper's (H, L));
- fewshot-official: the official rs-imle code's few-shot settings (config.FEWSHOT).

A preset lists every IMLEConfig field. resolve() lays the command line's flags over it; without a preset the
base is config.FEWSHOT (with --data) or config.DEFAULT_RUN (the embedded Stacked-Digits run), as before.
"""

import os
from dataclasses import dataclass, fields, replace

import yaml

from rtm_plugin.imle.config import DEFAULT_RUN, DEFAULT_RUN_REASONS, FEWSHOT, IMLEConfig, as_dict
from rtm_plugin.imle.protocols import protocol_metrics

HERE = os.path.dirname(os.path.abspath(__file__))
PRESETS = ('cifar10', 'celebahq', 'fewshot', 'fewshot-official')
FIELD_TYPES = {f.name: f.type for f in fields(IMLEConfig)}

@dataclass(frozen=True)
class Preset:
    name: str
    values: dict            # IMLEConfig field -> value
    sources: dict           # IMLEConfig field -> where the value comes from
    eval_protocol: str
    eval_source: str

def preset_path(name):
    if name not in PRESETS:
        raise ValueError(f'preset must be one of {", ".join(PRESETS)}, got {name!r}')
    return os.path.join(HERE, f'{name}.yaml')

def _typed(name, value, path):
    """A YAML value as the field's type (YAML reads 1e-3 as a string, 20 where 20.0 is meant)."""
    kind = FIELD_TYPES[name]
    if value is None or isinstance(value, kind):
        return value
    if kind is float and isinstance(value, (int, str)) and not isinstance(value, bool):
        return float(value)
    raise ValueError(f'{path}: {name} must be a {kind.__name__}, got {value!r}')

def load_preset(name):
    path = preset_path(name)
    with open(path, encoding='utf-8') as f:
        doc = yaml.safe_load(f)
    settings = doc.get('settings') or {}
    unknown = sorted(set(settings) - set(FIELD_TYPES))
    missing = sorted(set(FIELD_TYPES) - set(settings))
    if unknown or missing:
        raise ValueError(f'{path}: unknown settings {unknown}, missing settings {missing}')
    values, sources = {}, {}
    for key, entry in settings.items():
        if not isinstance(entry, dict) or set(entry) != {'value', 'source'} or not str(entry['source']).strip():
            raise ValueError(f'{path}: {key} must be {{value: ..., source: "..."}} with a non-empty source')
        values[key], sources[key] = _typed(key, entry['value'], path), entry['source']
    protocol = doc['eval_protocol']
    protocol_metrics(protocol['value'])                                 # a known protocol
    return Preset(name, values, sources, protocol['value'], protocol['source'])

@dataclass(frozen=True)
class Resolved:
    config: IMLEConfig
    given: dict             # the settings chosen explicitly (preset or flag): the CLI honours these over the data
    sources: dict           # field -> source of the value in use
    preset: str
    eval_protocol: str
    metrics: list

    def as_json(self):
        return dict(preset=self.preset, config=as_dict(self.config), sources=self.sources,
                    eval_protocol=self.eval_protocol, metrics=self.metrics)

def resolve(preset=None, flags=None, data=None, eval_protocol=None):
    """The run's settings: preset (or the default base), then the flags given on the command line.
    flags: {field: value} of the options actually given. eval_protocol: the flag, overriding the preset's."""
    flags = dict(flags or {})
    if preset is not None:
        p = load_preset(preset)
        base, sources = FEWSHOT, dict(p.sources)
        given = {**p.values, **flags}
        protocol = p.eval_protocol
    else:
        base = FEWSHOT if data else DEFAULT_RUN
        sources = dict(load_preset('fewshot-official').sources)        # FEWSHOT, value by value
        if not data:
            sources.update({k: f'default run: {why}' for k, (_, why) in DEFAULT_RUN_REASONS.items()})
        given = dict(flags)
        protocol = None
    if 'z_dim' in flags and 'rtm_dim' not in flags:                   # keep tokens x rtm_dim = z_dim
        given['rtm_dim'] = max(1, flags['z_dim'] // given.get('rtm_tokens', base.rtm_tokens))
        sources['rtm_dim'] = 'z_dim / rtm_tokens (command line)'
    sources.update({k: 'command line' for k in flags})
    if eval_protocol is not None:
        protocol = eval_protocol
    return Resolved(replace(base, **given), given, sources, preset, protocol, protocol_metrics(protocol))
