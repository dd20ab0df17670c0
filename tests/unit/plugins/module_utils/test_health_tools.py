# -*- coding: utf-8 -*-
"""health and the monitor without the tools they run: a cell without ``ping`` cannot
run the deep probe of ``health_target``, so the connection is ``unknown`` (pic_health)
and the monitor decides by the type's own check: never ``down`` (which would move
fail-open peers to the WAN) because a tool is missing."""
import os
import stat

import pytest

from ansible_collections.pic.connectivity.plugins.module_utils import cli, health, model

CONN = {'id': 'home-vpn', 'name': 'Home VPN', 'type': 'openvpn', 'index': 1, 'mark': 0x10000, 'interface': 'lo',
        'fail_open': True, 'config': {'health_target': '192.0.2.1'}}


@pytest.fixture
def layout():
    return model.normalize_settings(None)[1]


def _path_with_ping(monkeypatch, tmp_path, exit_code=None):
    """PATH = one empty directory, with a fake ``ping`` exiting ``exit_code`` when given."""
    if exit_code is not None:
        fake = tmp_path / 'ping'
        fake.write_text('#!/bin/sh\nexit %d\n' % exit_code)
        fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv('PATH', str(tmp_path))


def test_without_ping_the_probe_reports_nothing_probed(monkeypatch, tmp_path):
    _path_with_ping(monkeypatch, tmp_path)
    assert health.ping_through('192.0.2.1', 0x10000) is None


def test_without_ping_a_connection_with_a_health_target_is_unknown_never_down(monkeypatch, tmp_path, layout):
    assert os.path.exists('/sys/class/net/lo')
    _path_with_ping(monkeypatch, tmp_path)
    status, reason = health.check(CONN, {}, layout=layout)
    assert status == health.UNKNOWN, reason
    assert 'not run' in reason and 'iputils-ping' in reason


@pytest.mark.parametrize('exit_code, status', [(0, health.WORKING), (1, health.DOWN)])
def test_with_ping_the_deep_probe_decides(monkeypatch, tmp_path, layout, exit_code, status):
    _path_with_ping(monkeypatch, tmp_path, exit_code)
    assert health.check(CONN, {}, layout=layout)[0] == status


def test_without_ping_the_monitor_never_holds_the_exit_down(monkeypatch, tmp_path, layout):
    _path_with_ping(monkeypatch, tmp_path)
    monitor = cli.Monitor(str(tmp_path / 'state'))
    reason = None
    for _attempt in range(5):
        down, reason = monitor.verdict(CONN, layout)
        assert down is False, reason
    assert 'deep probe of 192.0.2.1 not run' in reason
    assert monitor.fails.get('home-vpn', 0) == 0


def test_with_a_failing_ping_the_monitor_counts_failures(monkeypatch, tmp_path, layout):
    _path_with_ping(monkeypatch, tmp_path, 1)
    monitor = cli.Monitor(str(tmp_path / 'state'))
    for count in range(1, 4):
        down, reason = monitor.verdict(CONN, layout)
        assert down is None           # decided by the counts (hysteresis)
        assert reason == 'probe of 192.0.2.1 failed %d times' % count
    assert monitor.fails['home-vpn'] == 3
