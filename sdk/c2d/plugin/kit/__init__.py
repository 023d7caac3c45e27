"""Building blocks engines share, so that every engine keeps the protocol's semantics the same way.

- :mod:`~c2d.plugin.kit.changes`: a change notifier the streams sleep on;
- :mod:`~c2d.plugin.kit.events`: job events from JSON lines to JobEvent;
- :mod:`~c2d.plugin.kit.handles`: the job handle format;
- :mod:`~c2d.plugin.kit.errors` and :mod:`~c2d.plugin.kit.rpc`: failures as gRPC statuses;
- :mod:`~c2d.plugin.kit.values` and :mod:`~c2d.plugin.kit.environments`: config checks;
- :mod:`~c2d.plugin.kit.jobdir` and :mod:`~c2d.plugin.kit.jobstore`: a job's durable files;
- :mod:`~c2d.plugin.kit.jobspec`, :mod:`~c2d.plugin.kit.grant`: StartJob's spec and grant, checked;
- :mod:`~c2d.plugin.kit.outcome`: how a job ended, as its terminal event;
- :mod:`~c2d.plugin.kit.drivers`, :mod:`~c2d.plugin.kit.streams`, :mod:`~c2d.plugin.kit.logs`,
  :mod:`~c2d.plugin.kit.fingerprint`, :mod:`~c2d.plugin.kit.podenv`: the rest of a servicer.

An engine keeps its durable state as files (a job directory with an
``events.jsonl``); these turn that state into the protocol's messages the same
way for every engine, so the conformance suite's expectations hold by
construction.
"""
