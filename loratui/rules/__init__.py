"""The guide's rules of thumb, as data, checked against a config and its dataset (pure Python).

``evaluate(Context(...))`` returns every finding; ``RULES`` lists every rule with its id. Rule
modules register themselves on import, in the order the guide tells its story: the dataset,
the length of training, learning rates, the network, tiny datasets,
combinations, the options beyond the guide (continuing, regularization, masks, validation, noise,
samples), and what the run costs.
"""

# The order of these imports is the order findings are listed in.
# isort: off
from loratui.rules import dataset  # noqa: F401  (each import registers that module's rules)
from loratui.rules import steps  # noqa: F401
from loratui.rules import rates  # noqa: F401
from loratui.rules import network  # noqa: F401
from loratui.rules import tiny  # noqa: F401
from loratui.rules import compat  # noqa: F401
from loratui.rules import continuing  # noqa: F401
from loratui.rules import regularization  # noqa: F401
from loratui.rules import masking  # noqa: F401
from loratui.rules import validation  # noqa: F401
from loratui.rules import noise  # noqa: F401
from loratui.rules import sampling  # noqa: F401
from loratui.rules import output  # noqa: F401
# isort: on
from loratui.rules.engine import RULES, SEVERITIES, Context, Finding, Fix, Rule, evaluate, worst

__all__ = ["RULES", "SEVERITIES", "Context", "Finding", "Fix", "Rule", "evaluate", "worst"]
