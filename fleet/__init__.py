"""Fleet replay: many recorded drives through one bundle on Ray (`edge fleet eval`; `edge fleet replay`
for MCAP drive logs, fleet.replay_worker and fleet.replay_report).

The driver (fleet.driver) hands drives to Ray actors (fleet.worker), each of which loads the bundle
once and replays drives one after another in lock-step, exactly as `edge eval` does; the results are
merged into `edge eval`'s report plus per-drive rows (fleet.report). The runtime package `edge/`
never imports ray: only this package does, and only when a fleet command runs.
"""
