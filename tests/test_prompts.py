"""Prompt rendering: the templates are read once per process."""

import os

from selfrepair.agents import prompts


def test_a_template_is_not_looked_up_on_disk_again_for_each_render(monkeypatch):
    """Jinja re-checks a cached template's file (a stat call) on every render unless told not
    to; the loop renders several prompts per candidate, and on a busy shared disk those stat
    calls were a noticeable part of the loop's own time."""
    template = prompts.environment().list_templates()[0]
    prompts.environment().get_template(template)
    looked = []
    real = os.path.getmtime

    def counted(path):
        looked.append(path)
        return real(path)

    monkeypatch.setattr(os.path, "getmtime", counted)
    for _ in range(3):
        assert prompts.environment().get_template(template) is not None
    assert looked == []
