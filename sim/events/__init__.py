"""What each scenario event does: the actors it puts in the world, how the ego reacts, and the
situation (the label) it creates; one module per event kind, looked up in ``registry``. See
``sim.world`` for the two-pass contract.

Labels are written from the point of view of a careful driver who sees the frame: a hazard is
labelled from the moment it is visible and relevant, and the ego's own motion follows the
label, so a clip shows both the cue and the reaction.
"""

from sim.events.ambient import AmbientTraffic
from sim.events.common import GENERIC_PRIORITY, PRIORITY
from sim.events.registry import BEHAVIOURS, make_behaviour

__all__ = ["BEHAVIOURS", "GENERIC_PRIORITY", "PRIORITY", "AmbientTraffic", "make_behaviour"]
