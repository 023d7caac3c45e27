"""Building blocks engines share: the change notifier, job events from JSON lines, job handles.

An engine keeps its durable state as files (a job directory with an
``events.jsonl``); these turn that state into the protocol's messages the same
way for every engine, so the conformance suite's expectations hold by
construction.
"""
