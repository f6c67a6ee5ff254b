"""Build :class:`~nnrag.mutate._graph.Constraints` from a recorded fx graph.

Each tensor node gets ``(class key, feature axis)``; see ``_graph`` for the rules. Nodes the
rules do not understand give their output a fresh class that is pinned, so widths flowing
through them are never changed by a plan.
"""

from __future__ import annotations

import math
from typing import Any

from nnrag.mutate._graph import Constraints

Feature = tuple[str, int]  # (class key, axis)
_NORMS = {f"{k}{d}d" for k in ("BatchNorm", "InstanceNorm") for d in (1, 2, 3)}
_CONVS = {f"{k}{d}d" for k in ("Conv", "ConvTranspose") for d in (1, 2, 3)}
_ELEMENTWISE = {"add", "sub", "mul", "truediv", "div", "iadd", "imul", "isub", "add_", "mul_",
                "sub_", "div_", "maximum", "minimum", "where"}
_RESHAPE = {"view", "reshape"}


def analyse(record: dict[str, Any]) -> Constraints:
    """Constraints from ``record`` (the output of the sandbox's ``record`` entry)."""
    c = Constraints()
    modules = record["modules"]
    for path, info in modules.items():
        for arg, spec in info["ports"].items():
            if arg != "bidirectional":
                c.add_port(f"{path}:{arg}", spec)
    graph = record.get("graph")
    if graph is None:  # no graph, no constraints: width plans are left to the sandbox to judge
        c.traced = False
        return c
    _Walker(c, record).run(graph)
    return c


class _Walker:
    def __init__(self, c: Constraints, record: dict[str, Any]) -> None:
        self.c = c
        self.modules = record["modules"]
        self.feat: dict[str, Feature | None] = {}
        self.tuples: dict[str, list[Feature | None]] = {}  # modules returning (output, state)
        self.attrs: dict[str, str] = {}  # get_attr node -> parameter path
        self.shape: dict[str, Any] = {}

    # -- helpers
    def fresh(self, node: str, width: int, *, pin: bool) -> str:
        key = f"t:{node}"
        self.c.find(key)
        self.c.size[key] = width
        if pin:
            self.c.pinned.add(key)
        return key

    def tensor_args(self, args: list[Any]) -> list[str]:
        return [a["n"] for a in args
                if isinstance(a, dict) and "n" in a and isinstance(self.shape.get(a["n"]), list)]

    def pin_input(self, name: str) -> None:
        f = self.feat.get(name)
        if f is not None:
            self.c.pinned.add(f[0])

    def set_out(self, node: dict[str, Any], feat: Feature | None) -> None:
        self.feat[node["name"]] = feat
        if feat is not None and isinstance(node["shape"], list):
            self.c.size.setdefault(feat[0], node["shape"][feat[1]])

    def opaque(self, node: dict[str, Any], inputs: list[str]) -> None:
        for name in inputs:
            self.pin_input(name)
        shape = node["shape"]
        if isinstance(shape, list) and shape:
            axis = 1 if len(shape) >= 3 else len(shape) - 1
            self.set_out(node, (self.fresh(node["name"], shape[axis], pin=True), axis))
        else:
            self.feat[node["name"]] = None

    # -- walk
    def run(self, graph: list[dict[str, Any]]) -> None:
        for node in graph:
            self.shape[node["name"]] = node["shape"]
            op = node["op"]
            if op == "placeholder":
                shape = node["shape"]
                if isinstance(shape, list) and len(shape) >= 2:
                    self.set_out(node, (self.fresh(node["name"], shape[1], pin=True), 1))
                continue
            if op == "output":
                for arg in node["args"]:
                    if isinstance(arg, dict) and "n" in arg:
                        self.pin_input(arg["n"])
                continue
            if not isinstance(node["shape"], list | dict):
                self.feat[node["name"]] = None
                continue
            if op == "get_attr":  # a parameter or buffer (class token, position table):
                self.attrs[node["name"]] = node["target"]
                self.parameter(node)  # its size follows the code that made it
            elif op == "call_module":
                self.module(node)
            elif op in ("call_function", "call_method"):
                self.function(node)
            else:
                self.opaque(node, self.tensor_args(node["args"]))

    def parameter(self, node: dict[str, Any]) -> None:
        shape = node["shape"]
        if isinstance(shape, list) and shape:
            axis = len(shape) - 1
            self.set_out(node, (self.fresh(node["name"], shape[axis], pin=False), axis))

    def module(self, node: dict[str, Any]) -> None:
        path = node["target"]
        info = self.modules.get(path, {})
        kind = info.get("type", "")
        inputs = self.tensor_args(node["args"])
        src = self.feat.get(inputs[0]) if inputs else None
        ports = info.get("ports", {})
        c = self.c

        def tie(arg: str, feat: Feature | None, axis_ok: bool = True) -> bool:
            if arg in ports and feat is not None and axis_ok:
                c.union(f"{path}:{arg}", feat[0])
                return True
            return False

        if kind in _CONVS and src is not None and src[1] == 1:
            tie("in_channels", src)
            groups = ports.get("groups", {}).get("value", 1)
            if groups > 1:
                if groups == ports["in_channels"]["value"]:
                    tie("groups", src)
                c.divides += [(f"{path}:in_channels", f"{path}:groups"),
                              (f"{path}:out_channels", f"{path}:groups")]
            key = f"{path}:out_channels"
            if (groups > 1 and groups == ports["in_channels"]["value"]
                    == ports["out_channels"]["value"]):
                tie("out_channels", src)  # depthwise with multiplier 1: the width passes through
                key = src[0]
            self.set_out(node, (key, 1))
            c.size.setdefault(key, ports["out_channels"]["value"])
            return
        last = (len(self.shape[inputs[0]]) - 1
                if inputs and isinstance(self.shape[inputs[0]], list) else -1)
        if kind == "Linear" and src is not None and src[1] == last:
            tie("in_features", src)
            key = f"{path}:out_features"
            self.set_out(node, (key, len(node["shape"]) - 1))
            return
        if kind in _NORMS and src is not None and src[1] == 1 and tie("num_features", src):
            self.set_out(node, src)
            return
        if kind == "GroupNorm" and src is not None and src[1] == 1 and tie("num_channels", src):
            c.divides.append((f"{path}:num_channels", f"{path}:num_groups"))
            self.set_out(node, src)
            return
        if (kind in ("LayerNorm", "RMSNorm") and src is not None and src[1] == last
                and tie("normalized_shape", src)):
            self.set_out(node, src)
            return
        if kind == "Embedding" and "embedding_dim" in ports:
            self.set_out(node, (f"{path}:embedding_dim", len(node["shape"]) - 1))
            return
        if kind == "Flatten" and self.flatten(node, inputs, src):
            return
        if (kind == "MultiheadAttention" and src is not None and src[1] == last
                and tie("embed_dim", src)):
            c.divides.append((f"{path}:embed_dim", f"{path}:num_heads"))
            self.tuples[node["name"]] = [src, None]
            return
        if (kind in ("LSTM", "GRU", "RNN") and src is not None and src[1] == last
                and tie("input_size", src)):
            hidden = f"{path}:hidden_size"
            factor = 2 if ports.get("bidirectional", {}).get("value") else 1
            key = self.fresh(node["name"], ports["hidden_size"]["value"] * factor, pin=False)
            c.derived.append((key, "scaled", [hidden], factor, []))
            self.tuples[node["name"]] = [(key, last), None]
            return
        if (kind == "PReLU" and ports.get("num_parameters", {}).get("value", 1) > 1
                and src is not None):
            tie("num_parameters", src)
        if (not info.get("params") or kind == "PReLU") and self.same_axis(node, inputs, src):
            return
        self.opaque(node, inputs)

    def same_axis(self, node: dict[str, Any], inputs: list[str], src: Feature | None) -> bool:
        """Shape-preserving on the feature axis (activation, dropout, pooling, slicing)."""
        if src is None or not inputs:
            return False
        ins, outs = self.shape[inputs[0]], node["shape"]
        if not isinstance(outs, list) or len(ins) != len(outs) or ins[src[1]] != outs[src[1]]:
            return False
        self.set_out(node, src)
        return True

    def function(self, node: dict[str, Any]) -> None:
        name = node["target"].rsplit(".", 1)[-1]
        args = node["args"]
        if (name == "getitem" and args and isinstance(args[0], dict)
                and args[0].get("n") in self.tuples):
            index = args[1].get("v") if len(args) > 1 and isinstance(args[1], dict) else None
            parts = self.tuples[args[0]["n"]]
            feat = (parts[index] if isinstance(index, int) and -len(parts) <= index < len(parts)
                    else None)
            if feat is not None and isinstance(node["shape"], list):
                self.set_out(node, feat)
            else:
                self.opaque(node, [])
            return
        inputs = self.tensor_args(node["args"])
        src = self.feat.get(inputs[0]) if inputs else None
        shape = node["shape"]
        if name in _ELEMENTWISE and len(inputs) >= 2:
            self.elementwise(node, inputs)
            return
        layer = self.weight_owner(node, name)
        if layer is not None:  # F.conv2d(x, self.weight) inside a subclass of nn.Conv2d
            self.module({**node, "target": layer, "args": node["args"][:1]})
            return
        if name in ("cat", "concat", "concatenate") and self.concat(node):
            return
        if name == "stack" and self.stack(node):
            return
        if name == "getitem" and inputs and self.index(node, inputs, src):
            return
        if name == "flatten" and self.flatten(node, inputs, src):
            return
        if name in _RESHAPE and self.reshape(node, inputs, src):
            return
        if name == "pad" and self.pad(node, inputs, src):
            return
        if (name in ("permute", "transpose", "swapaxes", "movedim")
                and self.permute(node, name, inputs, src)):
            return
        if (name in ("mean", "sum", "amax", "amin", "max", "min", "std", "var")
                and self.reduce(node, inputs, src)):
            return
        if len(inputs) == 1 and self.same_axis(node, inputs, src):
            return
        if (isinstance(shape, list) and inputs and all(self.shape[i] == shape for i in inputs)
                and src):
            for other in inputs[1:]:
                if self.feat.get(other):
                    self.c.union(self.feat[other][0], src[0])  # type: ignore[index]
            self.set_out(node, src)
            return
        self.opaque(node, inputs)

    def elementwise(self, node: dict[str, Any], inputs: list[str]) -> None:
        out = node["shape"]
        chosen: Feature | None = None
        for name in inputs:
            f, s = self.feat.get(name), self.shape[name]
            if f is None:
                continue
            axis = f[1] + len(out) - len(s)
            if s[f[1]] == out[axis] and s[f[1]] > 1:
                if chosen is None:
                    chosen = (f[0], axis)
                elif chosen[1] == axis:
                    self.c.union(f[0], chosen[0])
                else:
                    self.opaque(node, inputs)
                    return
        if chosen is None:
            self.opaque(node, inputs)
            return
        shapes = [self.shape[n] for n in inputs]
        if node["target"].endswith(("add", "iadd")) and len(inputs) == 2 and shapes[0] == shapes[1]:
            self.c.residuals.append({"node": node["name"], "line": node["line"], "args": inputs})
        self.set_out(node, chosen)

    def concat(self, node: dict[str, Any]) -> bool:
        args = node["args"]
        parts = [a["n"] for a in args[0].get("l", [])] if args and isinstance(args[0], dict) else []
        dim = args[1] if len(args) > 1 else node["kwargs"].get("dim", {"v": 0})
        dim = dim.get("v", 0) if isinstance(dim, dict) else 0
        feats = [self.feat.get(p) for p in parts]
        if not parts or any(f is None for f in feats) or not isinstance(dim, int):
            return False
        rank = len(node["shape"])
        dim %= rank
        axes = {f[1] for f in feats}  # type: ignore[index]
        if len(axes) != 1:
            return False
        axis = axes.pop()
        if dim != axis:
            for f in feats[1:]:
                self.c.union(f[0], feats[0][0])  # type: ignore[index]
            self.set_out(node, feats[0])
            return True
        key = self.fresh(node["name"], node["shape"][axis], pin=False)
        self.c.derived.append((key, "sum", [f[0] for f in feats], 1, []))  # type: ignore[index]
        self.set_out(node, (key, axis))
        return True

    def weight_owner(self, node: dict[str, Any], name: str) -> str | None:
        """The layer whose weight a functional conv/linear call uses, when it is a recorded one."""
        if name not in ("conv1d", "conv2d", "conv3d", "linear") or len(node["args"]) < 2:
            return None
        weight = node["args"][1]
        target = self.attrs.get(weight.get("n", "")) if isinstance(weight, dict) else None
        if target and target.endswith(".weight") and target[: -len(".weight")] in self.modules:
            return target[: -len(".weight")]
        return None

    def stack(self, node: dict[str, Any]) -> bool:
        """``torch.stack(parts, dim)``: equal widths, the feature axis moves past the new one."""
        args = node["args"]
        parts = ([a["n"] for a in args[0].get("l", []) if "n" in a]
                 if args and isinstance(args[0], dict) else [])
        dim = args[1] if len(args) > 1 else node["kwargs"].get("dim", {"v": 0})
        dim = dim.get("v", 0) if isinstance(dim, dict) else 0
        feats = [self.feat.get(p) for p in parts]
        if (not parts or any(f is None for f in feats)
                or len({f[1] for f in feats}) != 1 or not isinstance(dim, int)):  # type: ignore[index]
            return False
        dim %= len(node["shape"])
        for f in feats[1:]:
            self.c.union(f[0], feats[0][0])  # type: ignore[index]
        axis = feats[0][1] + (1 if dim <= feats[0][1] else 0)  # type: ignore[index]
        self.set_out(node, (feats[0][0], axis))  # type: ignore[index]
        return True

    def index(self, node: dict[str, Any], inputs: list[str], src: Feature | None) -> bool:
        """``x[:, :, -1]``-style indexing: integers drop axes, full slices keep them."""
        if src is None or len(node["args"]) < 2 or not isinstance(node["shape"], list):
            return False
        key = node["args"][1]
        items = key.get("l", [key])
        if (any("r" in i or "n" in i or (i.get("v") is Ellipsis) for i in items)
                or len(items) > len(self.shape[inputs[0]])):
            return False
        out_axis = 0
        for axis, item in enumerate(items):
            if "v" in item and item["v"] is None:  # None inserts an axis
                return False
            if axis == src[1]:
                if "s" not in item or self.shape[inputs[0]][axis] != node["shape"][out_axis]:
                    return False
                self.set_out(node, (src[0], out_axis))
                return True
            out_axis += 0 if "v" in item and isinstance(item["v"], int) else 1
        self.set_out(node, (src[0], out_axis + src[1] - len(items)))
        return True

    def flatten(self, node: dict[str, Any], inputs: list[str], src: Feature | None) -> bool:
        if src is None:
            return False
        ins, outs = self.shape[inputs[0]], node["shape"]
        start = len(outs) - 1 if len(outs) < len(ins) else None
        if start is None or src[1] < start - 0 or len(outs) != start + 1:
            return self.same_axis(node, inputs, src)
        return self.merge(node, ins, src, start)

    def merge(self, node: dict[str, Any], ins: list[int], src: Feature, start: int) -> bool:
        """Feature axis merged with the axes after it into output axis ``start``."""
        if src[1] != start or ins[src[1]] == 0:
            return False
        factor = math.prod(ins[start:]) // ins[src[1]]
        key = self.fresh(node["name"], node["shape"][start], pin=False)
        self.c.derived.append((key, "scaled", [src[0]], factor, []))
        self.set_out(node, (key, start))
        return True

    def reshape(self, node: dict[str, Any], inputs: list[str], src: Feature | None) -> bool:
        if src is None:
            return False
        ins, outs = self.shape[inputs[0]], node["shape"]
        args = node["args"][1:]
        if len(args) == 1 and "l" in args[0]:
            args = args[0]["l"]
        if len(outs) == 2 and len(ins) > 2 and src[1] == 1 and outs[1] == math.prod(ins[1:]):
            if not self.merge(node, ins, src, 1):
                return False
            self.tie_arg(node, args, 1)
            return True
        if (len(outs) == len(ins) and outs[src[1]] == ins[src[1]]
                and math.prod(outs[: src[1]]) == math.prod(ins[: src[1]])):
            self.set_out(node, src)
            self.tie_arg(node, args, src[1])
            return True
        return False

    def tie_arg(self, node: dict[str, Any], args: list[Any], axis: int) -> None:
        """A reshape's size argument on the feature axis is a port of that axis's class."""
        if axis < len(args) and isinstance(args[axis], dict) and "v" in args[axis]:
            arg = args[axis]
            if isinstance(arg["v"], int) and arg["v"] > 0:
                key = self.c.add_port(f"{node['name']}@{axis}",
                                      {"value": arg["v"], "expr": arg.get("e")})
                feat = self.feat[node["name"]]
                if feat is not None:
                    self.c.union(key, feat[0])

    def pad(self, node: dict[str, Any], inputs: list[str], src: Feature | None) -> bool:
        if src is None or len(node["args"]) < 2 or "l" not in node["args"][1]:
            return False
        ins, outs = self.shape[inputs[0]], node["shape"]
        if ins[src[1]] == outs[src[1]]:
            return self.same_axis(node, inputs, src)
        amounts = node["args"][1]["l"]
        index = 2 * (len(ins) - 1 - src[1])  # F.pad lists (before, after) from the last axis
        pair = amounts[index : index + 2]
        if len(pair) != 2 or any("v" not in p for p in pair):
            return False
        extra = [p.get("e") or ("const", p["v"]) for p in pair]
        key = self.fresh(node["name"], outs[src[1]], pin=False)
        self.c.derived.append((key, "sum", [src[0]], 1, extra))
        self.set_out(node, (key, src[1]))
        return True

    def permute(self, node: dict[str, Any], name: str, inputs: list[str],
                src: Feature | None) -> bool:
        if src is None:
            return False
        rank = len(self.shape[inputs[0]])
        raw = [a.get("v") for a in node["args"][1:] if isinstance(a, dict)]
        if raw and isinstance(node["args"][1], dict) and "l" in node["args"][1]:
            raw = [a.get("v") for a in node["args"][1]["l"]]
        if not raw or not all(isinstance(v, int) for v in raw):
            return False
        vals = [v % rank for v in raw if isinstance(v, int)]
        if name == "permute" and len(vals) == rank:
            axis = vals.index(src[1])
        elif len(vals) == 2:
            a, b = vals
            axis = b if src[1] == a else a if src[1] == b else src[1]
        else:
            return False
        self.set_out(node, (src[0], axis))
        return True

    def reduce(self, node: dict[str, Any], inputs: list[str], src: Feature | None) -> bool:
        if src is None:
            return False
        ins, outs = self.shape[inputs[0]], node["shape"]
        if not isinstance(outs, list):
            return False
        if len(outs) == len(ins):
            return self.same_axis(node, inputs, src)
        dims = node["args"][1] if len(node["args"]) > 1 else node["kwargs"].get("dim")
        if not isinstance(dims, dict):
            return False
        raw = [a.get("v") for a in dims["l"]] if "l" in dims else [dims.get("v")]
        if not all(isinstance(v, int) for v in raw):
            return False
        vals = [v % len(ins) for v in raw if isinstance(v, int)]
        if src[1] in vals:
            return False
        axis = src[1] - sum(1 for v in vals if v < src[1])
        if outs[axis] != ins[src[1]]:
            return False
        self.set_out(node, (src[0], axis))
        return True
