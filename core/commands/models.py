"""`python -m core models [--json]`: the models this installation can sample."""
from __future__ import annotations

import json

from ..registry import list_models


def register(subparsers) -> None:
    parser = subparsers.add_parser("models", help="list the available models")
    parser.add_argument("--json", action="store_true", help="print a machine-readable list")
    parser.set_defaults(func=run)


def run(args) -> int:
    infos = list_models()
    if args.json:
        print(json.dumps([info.to_dict() for info in infos], indent=2))
        return 0
    for info in infos:
        shape = "x".join(map(str, info.data_shape))
        extras = [f"{info.num_classes} classes" if info.num_classes else "unconditional"]
        if info.null_label:
            extras.append("CFG")
        if info.has_classifier:
            extras.append("classifier")
        print(f"{info.name:<18} {shape:<9} {', '.join(extras):<34} {info.description}")
    return 0
