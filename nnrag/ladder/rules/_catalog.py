"""Every registry of the ladder, by name (imports the inference modules, hence torch)."""

from __future__ import annotations

from nnrag.ladder.rules._config_fixes import CONFIG_FIXES
from nnrag.ladder.rules._forward_args import FORWARD_ARGS
from nnrag.ladder.rules._init_repairs import INIT_REPAIRS
from nnrag.ladder.rules._layouts import LEAF_LAYOUTS
from nnrag.ladder.rules._names import INIT_NAMES
from nnrag.ladder.rules._probe_repairs import PROBE_REPAIRS
from nnrag.ladder.rules._registry import Registry
from nnrag.ladder.rules._shapes import SHAPE_REPAIRS
from nnrag.ladder.rules._small import SMALL_CONFIGS

# In the order the ladder consults them: construct (names, configs, repairs), then probe.
RULES: dict[str, Registry] = {
    r.name: r
    for r in (
        INIT_NAMES,
        SMALL_CONFIGS,
        CONFIG_FIXES,
        INIT_REPAIRS,
        LEAF_LAYOUTS,
        FORWARD_ARGS,
        PROBE_REPAIRS,
        SHAPE_REPAIRS,
    )
}
