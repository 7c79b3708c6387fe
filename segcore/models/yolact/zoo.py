"""The registered YOLACT architectures: the official COCO variants of ``config.CONFIGS``
and the shipped demo model (``demo``).

Each builder takes ``num_classes`` (with the background, as torchvision counts) and typed
keyword overrides of the variant's config (``YolactSettings``); an unknown keyword raises
TypeError naming it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields, replace
from typing import Unpack

from segcore.models.weights import WeightsError
from segcore.models.yolact.checkpoint import load_yolact, yolact_loader
from segcore.models.yolact.config import CONFIGS, YolactConfig, YolactSettings
from segcore.models.yolact.demo import DEMO_CONFIG, DEMO_NAME, DEMO_WEIGHTS
from segcore.models.yolact.model import Yolact
from segcore.registry import Served, register

_FIELDS = frozenset(f.name for f in fields(YolactConfig))


def configure(name: str, base: YolactConfig, settings: YolactSettings) -> YolactConfig:
    """``base`` with ``settings`` applied; a key that is no config field raises TypeError
    naming it."""
    unknown = sorted(set(settings) - _FIELDS)
    if unknown:
        raise TypeError(f"{name}: unknown settings {', '.join(unknown)}")
    return replace(base, **settings)


def _variant(name: str, base: YolactConfig) -> Callable[..., Yolact]:
    def build(*, num_classes: int | None = None, **settings: Unpack[YolactSettings]) -> Yolact:
        config = configure(name, base, settings)
        if num_classes is not None:
            config = replace(config, num_classes=num_classes)
        return Yolact(config)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"YOLACT variant {name!r} (see ``segcore.models.yolact.config.CONFIGS``)."
    return build


#: The served build on the CPU of the variants without deformable convolutions
#: (bench/models.py, docs/benchmarks.md): the network up to its raw outputs as Inductor
#: graphs (weights frozen in); any frame is resized to the model's square, so one warm-up
#: frame covers every camera.
SERVED_CPU = Served(
    compile=("backbone", "fpn", "proto_net", "prediction_layers.0"),
    warm_sizes=((480, 640),),
    measured="bench/models.py --models yolact_r50: see docs/benchmarks.md",
)

for _name, _base in CONFIGS.items():
    _served = {} if any(_base.dcn_layers) else {"cpu": SERVED_CPU}
    register(_name, loader=yolact_loader(_name), input_side=_base.max_size, served=_served)(
        _variant(_name, _base)
    )


@register(DEMO_NAME, loader=yolact_loader(DEMO_NAME), input_side=DEMO_CONFIG.max_size)
def yolact_r18_demo(
    *, pretrained: bool = True, num_classes: int | None = None, **settings: Unpack[YolactSettings]
) -> Yolact:
    """The demo model, with its shipped weights unless ``pretrained=False`` (for training)."""
    if num_classes not in (None, DEMO_CONFIG.num_classes):
        raise TypeError(f"{DEMO_NAME} has {DEMO_CONFIG.num_classes} classes")
    model = Yolact(configure(DEMO_NAME, DEMO_CONFIG, settings))
    if pretrained:
        if not DEMO_WEIGHTS.is_file():
            raise WeightsError(
                f"{DEMO_WEIGHTS} is missing; train it with "
                "`segstream train configs/yolact_r18_demo.toml` or pass pretrained=False"
            )
        load_yolact(model, DEMO_WEIGHTS, what=DEMO_NAME)
    return model
