# -*- coding: utf-8 -*-
"""The boot restore hooks as rendered by the connectivity role: the systemd
unit's ordering and the exit statuses of restore.sh (cells without systemd)."""
import os
import shutil
import stat
import subprocess

import pytest

from ansible_collections.pic.connectivity.tests.unit.helpers import ROOT, render_template

TEMPLATES = os.path.join(ROOT, 'roles', 'connectivity', 'templates')


def render(name, **extra):
    values = dict(ansible_managed='Ansible managed', pic_entry_point='/usr/local/sbin/pic-connectivity',
                  pic_state_dir='/var/lib/pic-connectivity', pic_peer_interface='wg0',
                  connectivity_restore_hook='/var/lib/pic-connectivity/restore.sh',
                  connectivity_service_manager='none', connectivity_supervisord_conf='/etc/pic/supervisord.conf',
                  pic_supervisor_dir='/run/pic', inventory_hostname='cell1')
    values.update(extra)
    return render_template('connectivity', name, **values)


def unit_sections(text):
    out, section = {}, None
    for line in text.splitlines():
        if line.startswith('['):
            section = line.strip('[]')
        elif '=' in line and not line.startswith('#') and section:
            key, value = line.split('=', 1)
            out.setdefault(section, {}).setdefault(key, []).append(value)
    return out


def test_restore_unit_runs_before_the_network_and_after_nftables():
    unit = unit_sections(render('pic-connectivity-restore.service.j2'))
    assert unit['Unit']['DefaultDependencies'] == ['no']
    assert 'network-pre.target' in unit['Unit']['Before'][0].split()
    assert unit['Unit']['Wants'] == ['network-pre.target']
    assert 'nftables.service' in unit['Unit']['After'][0].split()
    assert unit['Unit']['PartOf'] == ['nftables.service']
    assert unit['Service']['SuccessExitStatus'] == ['3']
    assert unit['Service']['ExecStart'] == ['"/usr/local/sbin/pic-connectivity" "restore" "--state-dir" '
                                            '"/var/lib/pic-connectivity" "--peer-interface" "wg0"']
    assert unit['Install']['RequiredBy'] == ['wg-quick@wg0.service']
    assert set(unit['Install']['WantedBy'][0].split()) == {'sysinit.target', 'network-pre.target'}


def test_units_pass_systemd_analyze_verify(tmp_path):
    if shutil.which('systemd-analyze') is None:
        pytest.fail('systemd-analyze is missing: install systemd to verify the units')
    for name in ('pic-connectivity-restore.service', 'pic-connectivity-monitor.service'):
        text = render(name + '.j2', pic_entry_point='/bin/true')
        (tmp_path / name).write_text(text)
    names = ('pic-connectivity-restore.service', 'pic-connectivity-monitor.service')
    proc = subprocess.run(['systemd-analyze', 'verify'] + [str(tmp_path / n) for n in names],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize('status,expected', [(0, 0), (3, 3), (1, 1), (2, 1), (137, 1)])
def test_restore_sh_exit_status(tmp_path, status, expected):
    entry = tmp_path / 'pic-connectivity'
    entry.write_text('#!/bin/sh\necho "$@" > %s/args\nexit %d\n' % (tmp_path, status))
    entry.chmod(stat.S_IRWXU)
    script = tmp_path / 'restore.sh'
    script.write_text(render('restore.sh.j2', pic_entry_point=str(entry)))
    proc = subprocess.run(['sh', str(script)], capture_output=True, text=True, check=False)
    assert proc.returncode == expected, proc.stderr
    assert (tmp_path / 'args').read_text().split() == ['restore', '--state-dir', '/var/lib/pic-connectivity',
                                                       '--peer-interface', 'wg0']
    if status == 3:
        assert 'peers stay blocked' in proc.stderr
    if expected == 1:
        assert 'do not enable forwarding' in proc.stderr
